-- The definition of everything the jobq extension owns, one object per
-- record: kind <TAB> name <TAB> definition (definitions span lines).
-- tests/bin/upgrade-test.sh runs it in a database where jobq was upgraded
-- and in one where the same version was freshly created, and fails on any
-- difference: a change that an upgrade script forgot shows up here.
--
-- Compared: the extension's members; functions (arguments with defaults,
-- result, language, body, SECURITY DEFINER, search_path and other settings,
-- volatility, strictness, parallel safety, owner, privileges, comment);
-- tables, views, sequences, types (columns in order with type, NOT NULL,
-- default, identity; storage options; privileges incl. per column;
-- comments); constraints; indexes; triggers; view definitions; policies;
-- rules; the schema's privileges. Not compared: partitions of partitioned
-- tables (they follow the data, e.g. one per period) and their indexes,
-- data, and the cluster-wide roles. Records sort by the database's collation,
-- which upgrade-test.sh makes C for both databases.
\set ON_ERROR_STOP on
SET client_min_messages = warning;
-- Names outside pg_catalog come out schema-qualified.
SET search_path = pg_catalog;

-- Privileges as sorted grantee=privilege items; the built-in default when none were set.
CREATE FUNCTION pg_temp.acl(p_acl aclitem[], p_kind "char", p_owner oid) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(string_agg(x.item, ', ' ORDER BY x.item COLLATE "C"), '(none)')
    FROM (SELECT format('%s=%s%s', CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
                        a.privilege_type, CASE WHEN a.is_grantable THEN '*' END) AS item
          FROM aclexplode(coalesce(p_acl, acldefault(p_kind, p_owner))) AS a) AS x
$$;

-- The relations compared: jobq's, without partitions, their indexes, and TOAST.
CREATE TEMP VIEW rels AS
SELECT c.oid, c.oid::regclass::text AS name, c.relkind
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_index i ON i.indexrelid = c.oid
LEFT JOIN pg_class t ON t.oid = i.indrelid
WHERE n.nspname = 'jobq' AND c.relkind::text <> 't' AND NOT c.relispartition
  AND NOT coalesce(t.relispartition, false);

SELECT 'extension', e.extname,
       concat_ws(E'\n', 'version ' || e.extversion, 'schema ' || n.nspname,
                 'relocatable ' || e.extrelocatable,
                 'config tables ' || (SELECT coalesce(string_agg(x::regclass::text, ', ' ORDER BY x::regclass::text COLLATE "C"), '')
                                      FROM unnest(e.extconfig) AS x),
                 'config conditions ' || coalesce(array_to_string(e.extcondition, ' | '), ''))
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'jobq';

SELECT 'schema', n.nspname,
       concat_ws(E'\n', 'owner ' || pg_get_userbyid(n.nspowner),
                 'acl ' || pg_temp.acl(n.nspacl, 'n', n.nspowner),
                 'comment ' || obj_description(n.oid, 'pg_namespace'))
FROM pg_namespace n WHERE n.nspname = 'jobq';

SELECT 'default acl', d.defaclobjtype::text, pg_temp.acl(d.defaclacl, d.defaclobjtype, d.defaclrole)
FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace
WHERE n.nspname = 'jobq'
ORDER BY 2;

-- Members of the extension (anywhere), partitions left out.
SELECT 'member', pg_describe_object(d.classid, d.objid, d.objsubid), ''
FROM pg_depend d
JOIN pg_extension e ON e.oid = d.refobjid
WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e' AND e.extname = 'jobq'
  AND NOT (d.classid = 'pg_class'::regclass
           AND d.objid IN (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                           WHERE n.nspname = 'jobq' AND c.oid NOT IN (SELECT r.oid FROM rels r)))
ORDER BY 2;

-- Functions and procedures, in jobq or belonging to the extension.
SELECT 'function', p.oid::regprocedure::text,
       concat_ws(E'\n',
                 'kind ' || p.prokind::text,
                 'arguments ' || pg_get_function_arguments(p.oid),
                 'result ' || coalesce(pg_get_function_result(p.oid), ''),
                 'language ' || l.lanname,
                 'security definer ' || p.prosecdef,
                 'config ' || coalesce(array_to_string(p.proconfig, ', '), ''),
                 'volatility ' || p.provolatile::text,
                 'strict ' || p.proisstrict,
                 'parallel ' || p.proparallel::text,
                 'leakproof ' || p.proleakproof,
                 'cost ' || p.procost || ' rows ' || p.prorows,
                 'owner ' || pg_get_userbyid(p.proowner),
                 'acl ' || pg_temp.acl(p.proacl, 'f', p.proowner),
                 'comment ' || coalesce(obj_description(p.oid, 'pg_proc'), ''),
                 'library ' || coalesce(p.probin, ''),
                 'body',
                 regexp_replace(p.prosrc, '[ \t]+$', '', 'gn'))
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_language l ON l.oid = p.prolang
WHERE n.nspname = 'jobq'
   OR p.oid IN (SELECT d.objid FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
                WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_extension'::regclass
                  AND d.deptype = 'e' AND e.extname = 'jobq')
ORDER BY 2;

-- Relations: kind, persistence, storage options, owner, privileges, comment.
SELECT 'relation', r.name,
       concat_ws(E'\n',
                 'kind ' || c.relkind::text,
                 'persistence ' || c.relpersistence::text,
                 'access method ' || coalesce(am.amname, ''),
                 'options ' || coalesce(array_to_string(c.reloptions, ', '), ''),
                 'replica identity ' || c.relreplident::text,
                 'row security ' || c.relrowsecurity || ' forced ' || c.relforcerowsecurity,
                 'partition key ' || coalesce(pg_get_partkeydef(c.oid), ''),
                 'owner ' || pg_get_userbyid(c.relowner),
                 'acl ' || pg_temp.acl(c.relacl, CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char",
                                       c.relowner),
                 'comment ' || coalesce(obj_description(c.oid, 'pg_class'), ''))
FROM rels r
JOIN pg_class c ON c.oid = r.oid
LEFT JOIN pg_am am ON am.oid = c.relam
ORDER BY 2;

-- Columns in order: position among the live columns, type, NOT NULL,
-- default, identity, generation, collation, privileges, comment.
SELECT 'column', r.name || '.' || a.attname,
       concat_ws(' ',
                 '#' || row_number() OVER (PARTITION BY r.oid ORDER BY a.attnum),
                 format_type(a.atttypid, a.atttypmod),
                 CASE WHEN a.attnotnull THEN 'not null' END,
                 'default ' || pg_get_expr(ad.adbin, ad.adrelid),
                 CASE a.attidentity WHEN 'a' THEN 'identity always' WHEN 'd' THEN 'identity by default' END,
                 CASE a.attgenerated WHEN 's' THEN 'generated stored' END,
                 'collation ' || CASE WHEN a.attcollation <> 0 THEN a.attcollation::regcollation::text END,
                 'storage ' || a.attstorage::text,
                 'acl ' || CASE WHEN a.attacl IS NOT NULL THEN pg_temp.acl(a.attacl, 'c', c.relowner) END,
                 'comment ' || col_description(r.oid, a.attnum))
FROM rels r
JOIN pg_class c ON c.oid = r.oid
JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
WHERE r.relkind IN ('r', 'p', 'v', 'm', 'c', 'f')
ORDER BY r.name COLLATE "C", a.attnum;

-- Sequences (identity ones included): their parameters, not their values.
SELECT 'sequence', r.name,
       concat_ws(' ', format_type(s.seqtypid, NULL), 'start', s.seqstart, 'increment', s.seqincrement,
                 'min', s.seqmin, 'max', s.seqmax, 'cache', s.seqcache, 'cycle', s.seqcycle)
FROM rels r JOIN pg_sequence s ON s.seqrelid = r.oid
ORDER BY 2;

SELECT 'constraint', coalesce(r.name, format_type(co.contypid, NULL)) || ' ' || co.conname,
       concat_ws(' ', pg_get_constraintdef(co.oid),
                 CASE WHEN co.condeferrable THEN 'deferrable' END,
                 CASE WHEN co.condeferred THEN 'initially deferred' END,
                 CASE WHEN NOT co.convalidated THEN 'not valid' END)
FROM pg_constraint co
JOIN pg_namespace n ON n.oid = co.connamespace
LEFT JOIN rels r ON r.oid = co.conrelid
WHERE n.nspname = 'jobq' AND (co.conrelid = 0 OR r.oid IS NOT NULL)
ORDER BY 2;

SELECT 'index', r.name,
       concat_ws(' ', pg_get_indexdef(i.indexrelid),
                 CASE WHEN i.indisclustered THEN 'clustered' END,
                 CASE WHEN i.indisreplident THEN 'replica identity' END,
                 CASE WHEN NOT i.indisvalid THEN 'INVALID' END)
FROM rels r JOIN pg_index i ON i.indexrelid = r.oid
ORDER BY 2;

SELECT 'trigger', r.name || ' ' || t.tgname,
       pg_get_triggerdef(t.oid, true) || ' enabled ' || t.tgenabled::text
FROM pg_trigger t JOIN rels r ON r.oid = t.tgrelid
WHERE NOT t.tgisinternal
ORDER BY 2;

SELECT 'view', r.name, pg_get_viewdef(r.oid, true)
FROM rels r WHERE r.relkind IN ('v', 'm')
ORDER BY 2;

SELECT 'rule', r.name || ' ' || w.rulename, pg_get_ruledef(w.oid, true)
FROM pg_rewrite w JOIN rels r ON r.oid = w.ev_class
WHERE w.rulename <> '_RETURN'
ORDER BY 2;

SELECT 'policy', r.name || ' ' || p.polname,
       concat_ws(' ', p.polcmd::text, p.polpermissive,
                 (SELECT string_agg(r.name, ',' ORDER BY r.name COLLATE "C")
                  FROM (SELECT CASE x WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(x)::text END AS name
                        FROM unnest(p.polroles) AS x) AS r),
                 pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid))
FROM pg_policy p JOIN rels r ON r.oid = p.polrelid
ORDER BY 2;

-- Types of their own (composite, enum, domain, range), not the row types of tables.
SELECT 'type', format_type(t.oid, NULL),
       concat_ws(E'\n', 'kind ' || t.typtype::text,
                 'base ' || CASE WHEN t.typtype::text = 'd' THEN format_type(t.typbasetype, t.typtypmod) END,
                 'not null ' || CASE WHEN t.typtype::text = 'd' THEN t.typnotnull::text END,
                 'default ' || t.typdefault,
                 'labels ' || (SELECT string_agg(el.enumlabel, ', ' ORDER BY el.enumsortorder)
                               FROM pg_enum el WHERE el.enumtypid = t.oid),
                 'owner ' || pg_get_userbyid(t.typowner),
                 'acl ' || pg_temp.acl(t.typacl, 'T', t.typowner),
                 'comment ' || obj_description(t.oid, 'pg_type'))
FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN pg_class c ON c.oid = t.typrelid
WHERE n.nspname = 'jobq' AND t.typcategory <> 'A' AND (t.typtype::text <> 'c' OR c.relkind::text = 'c')
ORDER BY 2;
