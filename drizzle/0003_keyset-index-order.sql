DROP INDEX "conversations_org_recent_idx";--> statement-breakpoint
DROP INDEX "messages_org_conversation_recent_idx";--> statement-breakpoint
CREATE INDEX "conversations_org_recent_idx" ON "conversations" USING btree ("organization_id","last_message_at" DESC NULLS FIRST,"id" DESC NULLS FIRST);--> statement-breakpoint
CREATE INDEX "messages_org_conversation_recent_idx" ON "messages" USING btree ("organization_id","conversation_id","created_at" DESC NULLS FIRST,"id" DESC NULLS FIRST);