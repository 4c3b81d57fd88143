ALTER TABLE "messages" DROP CONSTRAINT "messages_organization_id_organizations_id_fk";
--> statement-breakpoint
DROP INDEX "messages_org_provider_message_id_key";--> statement-breakpoint
DROP INDEX "messages_org_idempotency_key";--> statement-breakpoint
DROP INDEX "messages_provider_message_id_idx";--> statement-breakpoint
CREATE UNIQUE INDEX "messages_org_provider_message_id_key" ON "messages" USING btree ("organization_id","provider_message_id") WHERE "messages"."provider_message_id" is not null;--> statement-breakpoint
CREATE UNIQUE INDEX "messages_org_idempotency_key" ON "messages" USING btree ("organization_id","idempotency_key") WHERE "messages"."idempotency_key" is not null;--> statement-breakpoint
CREATE INDEX "messages_provider_message_id_idx" ON "messages" USING btree ("provider_message_id") WHERE "messages"."provider_message_id" is not null;