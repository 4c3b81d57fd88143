ALTER TABLE "messages" ADD COLUMN "sent_from" text;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "in_doubt_at" timestamp (3) with time zone;--> statement-breakpoint
ALTER TABLE "phone_numbers" ADD COLUMN "messaging_service_sid" text;