#include "service/store/pg/pg_schema.h"

namespace assistants {

// Version 1 mirrors SqliteStore's schema (all four of its migrations):
//
// objects holds every assistant, thread, message, run and run step as a
// serialized protobuf (body) beside the columns the queries need. seq (an
// identity column) orders lists; it grows with every insert but concurrent
// transactions may commit out of seq order, so a list read while inserts
// commit may later gain an item before its last one. That is fine for these
// lists (each writer's own objects are in order, and per-thread writes are
// serialized by the thread row lock). parent_id is NULL for assistants and
// threads, the thread for messages and runs, the run for run steps
// (deleting a run cascades to its steps). active is true exactly for runs
// whose status is active. project names the owner of assistants and
// threads (NULL otherwise).
//
// tombstones keep the seq of deleted objects so a cursor naming one keeps
// its place. run_events has no foreign key (a lookup per appended event):
// DeleteThread deletes a thread's logs itself. message_counts is kept by a
// trigger in the inserting transaction, so the per-thread message limit is
// checked without counting the thread.
//
// run_leases: which replica drives each run (owner NULL: nobody); the
// cluster code acquires, renews and releases rows, CreateRun inserts them
// and DeleteThread deletes them; CommitRunChanges checks them for fencing.
const std::vector<pg::Migration>& PgMigrations() {
  static const std::vector<pg::Migration>* migrations =
      new std::vector<pg::Migration>{
          {1, R"sql(
CREATE TABLE objects (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id text NOT NULL UNIQUE,
  kind text NOT NULL,
  parent_id text REFERENCES objects (id) ON DELETE CASCADE,
  run_id text NOT NULL DEFAULT '',
  project text,
  active boolean NOT NULL DEFAULT false,
  body bytea NOT NULL
);
CREATE INDEX objects_by_kind_parent ON objects (kind, parent_id, seq);
CREATE INDEX objects_by_parent_run ON objects (parent_id, run_id, seq);
CREATE INDEX objects_by_project ON objects (kind, project, seq)
  WHERE project IS NOT NULL;
CREATE INDEX objects_active_runs ON objects (seq) WHERE active;
CREATE INDEX objects_active_by_parent ON objects (parent_id, seq)
  WHERE active;

CREATE TABLE tombstones (
  id text PRIMARY KEY,
  kind text NOT NULL,
  parent_id text,
  project text,
  seq bigint NOT NULL
);
CREATE INDEX tombstones_by_parent ON tombstones (parent_id);

CREATE TABLE idempotency (
  key text PRIMARY KEY,
  fingerprint bytea NOT NULL,
  response bytea NOT NULL,
  created_at_ms bigint NOT NULL
);
CREATE INDEX idempotency_by_age ON idempotency (created_at_ms);

CREATE TABLE run_events (
  run_id text NOT NULL,
  seq bigint NOT NULL,
  body bytea NOT NULL,
  PRIMARY KEY (run_id, seq)
);

CREATE TABLE message_counts (
  thread_id text PRIMARY KEY,
  messages bigint NOT NULL
);
CREATE FUNCTION message_counts_track() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO message_counts (thread_id, messages)
      VALUES (NEW.parent_id, 1)
      ON CONFLICT (thread_id)
      DO UPDATE SET messages = message_counts.messages + 1;
    RETURN NEW;
  END IF;
  UPDATE message_counts SET messages = messages - 1
    WHERE thread_id = OLD.parent_id;
  RETURN OLD;
END
$$;
CREATE TRIGGER message_counts_insert AFTER INSERT ON objects
  FOR EACH ROW WHEN (NEW.kind = 'message')
  EXECUTE FUNCTION message_counts_track();
CREATE TRIGGER message_counts_delete AFTER DELETE ON objects
  FOR EACH ROW WHEN (OLD.kind = 'message')
  EXECUTE FUNCTION message_counts_track();

CREATE TABLE run_leases (run_id text PRIMARY KEY, thread_id text NOT NULL,
  owner text, token bigint NOT NULL DEFAULT 0, expires_at timestamptz NOT NULL);
CREATE INDEX run_leases_by_expiry ON run_leases (expires_at);
)sql"},
      };
  return *migrations;
}

}  // namespace assistants
