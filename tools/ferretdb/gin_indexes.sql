-- GIN indexes that FerretDB 1.x's filter pushdown can use. scripts/infra applies this file as the
-- superuser, in FerretDB's database, at every `up`: it must stay idempotent.
--
-- FerretDB pushes an equality on a top-level field down as `_jsonb -> 'field' @> '<value>'`, but
-- `createIndexes` makes btree indexes on `(_jsonb -> 'field')`, which cannot serve `@>`: every filter
-- read the whole table. For each such btree (one per top-level field of a compound index; the `_id_`
-- index FerretDB makes right after each collection's table is one) an event trigger adds its GIN twin,
-- `USING gin ((_jsonb -> 'field'))`. PostgreSQL must also run with plan_cache_mode = force_custom_plan:
-- FerretDB sends the field as a parameter of cached prepared statements, and a generic plan (field
-- unknown) never matches an index.
--
-- Dotted paths are left alone (FerretDB does not push them down). A twin stays if FerretDB drops the
-- btree it shadows (dropIndexes): queries stay right, writes to that collection pay for it.

CREATE SCHEMA IF NOT EXISTS civique$gin; -- a name FerretDB refuses for a database: never one of its schemas
GRANT USAGE ON SCHEMA civique$gin TO ferretdb; -- the trigger runs as the role whose DDL fired it

-- Adds the GIN twin of one index if it is a btree on top-level fields of a FerretDB collection.
CREATE OR REPLACE FUNCTION civique$gin.add_gin_twins(btree oid) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
  ix record;
  key_expr text;
  twin text;
BEGIN
  SELECT n.nspname AS schema_name, t.relname AS table_name, i.indnkeyatts AS keys
    INTO ix
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_am am ON am.oid = c.relam
    JOIN pg_class t ON t.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
   WHERE i.indexrelid = btree
     AND am.amname = 'btree' -- the GIN indexes made below fire the trigger too: this ends the recursion
     AND t.relname NOT LIKE '\_ferretdb\_%'; -- FerretDB's own metadata table, read whole anyway
  IF NOT FOUND THEN
    RETURN;
  END IF;
  FOR k IN 1..ix.keys LOOP
    key_expr := pg_get_indexdef(btree, k, false); -- e.g. ((_jsonb -> 'stream_id'::text))
    CONTINUE WHEN key_expr !~ $re$^\(+_jsonb -> '([^']|'')*'::text\)+$$re$; -- not ((_jsonb -> 'a') -> 'b')
    -- never ends in `_idx` like FerretDB's names (nor in 8 hex digits like its tables'), so never
    -- takes a name FerretDB will want; deterministic, so a field of several indexes gets one twin
    twin := left(ix.table_name, 40) || '_' || left(md5(key_expr), 12) || '_gin';
    CONTINUE WHEN to_regclass(format('%I.%I', ix.schema_name, twin)) IS NOT NULL; -- checked before any lock
    -- fastupdate off: its pending list, kept until a vacuum, is read whole by every lookup (find_one by
    -- _id took 4.6 ms instead of 0.8 ms after 100,000 inserts); inserts pay about 20% more instead
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I.%I USING gin (%s) WITH (fastupdate = off)',
                   twin, ix.schema_name, ix.table_name, key_expr);
  END LOOP;
END
$fn$;

CREATE OR REPLACE FUNCTION civique$gin.on_create_index() RETURNS event_trigger LANGUAGE plpgsql AS $fn$
DECLARE
  cmd record;
BEGIN
  FOR cmd IN SELECT objid FROM pg_event_trigger_ddl_commands() WHERE object_type = 'index' LOOP
    BEGIN
      PERFORM civique$gin.add_gin_twins(cmd.objid);
    EXCEPTION WHEN OTHERS THEN
      -- a missing twin costs speed only: never fail FerretDB's createIndexes (or its collection) over it
      RAISE WARNING 'civique: no GIN twin for index %: %', cmd.objid::regclass, SQLERRM;
    END;
  END LOOP;
END
$fn$;

DROP EVENT TRIGGER IF EXISTS civique_gin_twins;
CREATE EVENT TRIGGER civique_gin_twins ON ddl_command_end WHEN TAG IN ('CREATE INDEX')
  EXECUTE FUNCTION civique$gin.on_create_index();

-- Indexes made before this trigger existed (or changed) get their twins now; a no-op otherwise.
SELECT civique$gin.add_gin_twins(i.indexrelid)
  FROM pg_index i
  JOIN pg_class t ON t.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'civique$gin');
