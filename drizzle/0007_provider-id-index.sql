DROP INDEX "messages_provider_message_id_idx";--> statement-breakpoint
DROP INDEX "messages_org_provider_message_id_key";--> statement-breakpoint
CREATE UNIQUE INDEX "messages_org_provider_message_id_key" ON "messages" USING btree ("provider_message_id","organization_id") WHERE "messages"."provider_message_id" is not null;--> statement-breakpoint
-- Room on each new page of messages for the versions a send's two updates write (the provider's id, then the
-- delivery status), so the status update stays on its page (HOT: no index entries). Existing pages keep theirs.
ALTER TABLE "messages" SET (fillfactor = 90);
