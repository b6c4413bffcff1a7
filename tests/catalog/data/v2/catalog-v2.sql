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
INSERT INTO "chunks" VALUES(1,1,1,0,1,3,3,40960,40960,1135591601,0,0,15,X'000000000000000001000000010100000000000000020000000003000000000000000100000001040000000000000002000000000600000000000000010000000107000000000000000200000000090000000000000001000000010A0000000000000002000000000C0000000000000001000000010D0000000000000002000000000F000000000000000100000001',X'F12BC47C689F3927042C69A3EF9F045B35053480B881A33DB6B07E1A9984477A6947C85F432E2E10D0732B8948CB7D4A63C25DF114AE5DBD27B7AA898B41BCA65CD358E5FD119238DB71F5C00AC1CDD9C274D3C15DD6585D1CD13D7BFE71F56D90719D117575339CD8A8D4FBCCBAF5204DA96ABAF7A0856EA84FE4DB0C8314755E2AA62F4F4DF3EA738D5CE4D3A8D379B31C3A33CC87FAC9AE2DA1C18F1037BC');
INSERT INTO "chunks" VALUES(2,2,2,0,1,10,1,4096,4096,2809345132,0,5,5,X'05000000000000000100000000',X'4CB68301F42847E7317D150D70AB7AD8');
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
    source_path TEXT,             -- the volume's source for this generation (NULL: not recorded)
    source_real TEXT,             -- the same path with symlinks resolved
    source_dev INTEGER,           -- block device number, or the file's file system device
    source_ino INTEGER,           -- the file's inode, 0 for a block device
    UNIQUE (volume_id, number)
);
INSERT INTO "generations" VALUES(1,1,1,'b58c2ed6-9702-439d-b262-0e95930c1ebd',0,'full','complete',65536,4096,16384,1023,'none',1796399437,1,10,6,40960,40960,'backup','/tmp/v2/root','/tmp/v2/root',65024,2375887);
INSERT INTO "generations" VALUES(2,1,2,'126a0f78-d98f-42ba-bdf8-767e6a798b86',1,'incremental','complete',65536,4096,16384,1023,'none',1796399438,1,1,0,4096,4096,'backup','/tmp/v2/root','/tmp/v2/root',65024,2375887);
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
INSERT INTO "media" VALUES(1,'7dcf5fd9-a390-46e5-aa2a-3f8d346bfce6',1,1,'',16384,1796399437,'sim:/tmp/v2/tape.tap');
CREATE TABLE media_sets (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    first_seen INTEGER NOT NULL
);
INSERT INTO "media_sets" VALUES(1,'aa6d719a-0714-4793-b579-ed4accf1f671',1796399437);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO "meta" VALUES('schema_version','2');
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
INSERT INTO "volumes" VALUES(1,1,'root','bcd55e5f-d467-4706-9597-5abfab92a1ef');
CREATE INDEX chunks_by_generation ON chunks (generation_id, seq);
COMMIT;
