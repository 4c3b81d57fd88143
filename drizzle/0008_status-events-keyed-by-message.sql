DROP INDEX "message_status_events_message_idx";--> statement-breakpoint
ALTER TABLE "message_status_events" DROP CONSTRAINT "message_status_events_organization_id_id_pk";--> statement-breakpoint
ALTER TABLE "message_status_events" ADD CONSTRAINT "message_status_events_organization_id_message_id_id_pk" PRIMARY KEY("organization_id","message_id","id");