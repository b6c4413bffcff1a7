BEGIN TRANSACTION;
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY,
    generation_id INTEGER NOT NULL REFERENCES generations(id) ON DELETE CASCADE,
    tape_file_id INTEGER NOT NULL REFERENCES tape_files(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    record INTEGER NOT NULL,      -- index of its first record within the tape file
    logical INTEGER NOT NULL,     -- logical position of its first record (LOCATE target)
    record_count INTEGER NOT NULL,
    stored_len INTEGER NOT NULL,
    raw_len INTEGER NOT NULL,
    payload_crc INTEGER NOT NULL,
    flags INTEGER NOT NULL,
    first_block INTEGER NOT NULL,
    last_block INTEGER NOT NULL,
    runs BLOB NOT NULL,           -- packed runs: (first u64, count u32, kind u8) little-endian each
    digests BLOB NOT NULL,        -- 16 bytes per data block, in run order
    UNIQUE (generation_id, seq)
);
INSERT INTO "chunks" VALUES(1,1,1,0,1,3,3,8192,8192,1658639186,0,0,15,X'00000000000000000100000000010000000000000004000000010500000000000000010000000006000000000000000A00000001',X'29EDD87EA0E57C6A8C652B1ED7720C8151FC7C569107A34D0DFD0BEE95FD02B9');
INSERT INTO "chunks" VALUES(2,2,2,0,1,10,2,4096,4096,2771821673,0,3,3,X'03000000000000000100000000',X'1104E2A3202359587482B98BCA1463E9');
CREATE TABLE generations (
    id INTEGER PRIMARY KEY,
    volume_id INTEGER NOT NULL REFERENCES volumes(id),
    number INTEGER NOT NULL,
    run_uuid TEXT NOT NULL UNIQUE,
    base INTEGER NOT NULL,        -- 0 for a full generation
    kind TEXT NOT NULL,           -- 'full' | 'incremental'
    state TEXT NOT NULL,          -- 'writing' | 'complete' | 'incomplete'
    volume_size INTEGER NOT NULL,
    block_size INTEGER NOT NULL,
    record_size INTEGER NOT NULL,
    chunk_blocks INTEGER NOT NULL,
    compression TEXT NOT NULL,
    created INTEGER NOT NULL,
    chunk_count INTEGER NOT NULL DEFAULT 0,
    data_blocks INTEGER NOT NULL DEFAULT 0,
    zero_blocks INTEGER NOT NULL DEFAULT 0,
    raw_bytes INTEGER NOT NULL DEFAULT 0,
    stored_bytes INTEGER NOT NULL DEFAULT 0,
    source TEXT NOT NULL,         -- 'backup' | 'trailer' | 'deep' (how the row was learnt)
    UNIQUE (volume_id, number)
);
INSERT INTO "generations" VALUES(1,1,1,'212efbed-ad0a-47da-8eec-9f32a2637243',0,'full','complete',65536,4096,4096,1023,'none',1796388424,1,2,14,8192,8192,'backup');
INSERT INTO "generations" VALUES(2,1,2,'3fb814ce-6e5d-4df5-aea3-3e4baad9fd28',1,'incremental','complete',65536,4096,4096,1023,'none',1796388425,1,1,0,4096,4096,'backup');
CREATE TABLE media (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    set_id INTEGER NOT NULL REFERENCES media_sets(id),
    sequence INTEGER NOT NULL,
    label TEXT NOT NULL,
    record_size INTEGER NOT NULL,
    created INTEGER NOT NULL,
    last_name TEXT               -- how the medium was last named (--media), a hint only
);
INSERT INTO "media" VALUES(1,'7ab4ae92-cb65-4681-8696-8abdd2359eb4',1,1,'',4096,1796388424,'sim:/tmp/volid_fx/tape.tap');
CREATE TABLE media_sets (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    first_seen INTEGER NOT NULL
);
INSERT INTO "media_sets" VALUES(1,'820fd095-2da1-43ed-b88d-4e95383ecf5f',1796388424);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO "meta" VALUES('schema_version','1');
CREATE TABLE tape_files (
    id INTEGER PRIMARY KEY,
    medium_id INTEGER NOT NULL REFERENCES media(id),
    file_number INTEGER NOT NULL,
    logical INTEGER NOT NULL,     -- logical position of its first record
    generation_id INTEGER REFERENCES generations(id),
    part INTEGER NOT NULL DEFAULT 0,
    closed INTEGER NOT NULL DEFAULT 0,   -- ends with a filemark
    has_trailer INTEGER NOT NULL DEFAULT 0,
    continues INTEGER NOT NULL DEFAULT 0,  -- its trailer says: the generation goes on on the next medium
    UNIQUE (medium_id, file_number)
);
INSERT INTO "tape_files" VALUES(1,1,1,2,1,0,1,1,0);
INSERT INTO "tape_files" VALUES(2,1,2,9,2,0,1,1,0);
CREATE TABLE volumes (
    id INTEGER PRIMARY KEY,
    set_id INTEGER NOT NULL REFERENCES media_sets(id),
    name TEXT NOT NULL,
    uuid TEXT NOT NULL,
    UNIQUE (set_id, name)
);
INSERT INTO "volumes" VALUES(1,1,'root','008f5353-f7cf-4b0b-87df-9e127c8c41c8');
CREATE INDEX chunks_by_generation ON chunks (generation_id, seq);
COMMIT;
