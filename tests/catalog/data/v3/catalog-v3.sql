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
INSERT INTO "chunks" VALUES(1,1,1,0,1,3,3,40960,40960,3922481322,0,0,15,X'000000000000000001000000010100000000000000020000000003000000000000000100000001040000000000000002000000000600000000000000010000000107000000000000000200000000090000000000000001000000010A0000000000000002000000000C0000000000000001000000010D0000000000000002000000000F000000000000000100000001',X'B63A198D56C5F74A1D7B6F79C799570E47D02C2489F3E6C809340DE62FB26CEB514550224A9BFBA204EB94388F7AB40DD35B8F15FAD2018C720CB47FC2D481EEBC3A5872FC1489FF6F5E0EE519EC215F74A6A769634367EF72AC72CFA269ABBB53B30846E4015646A7B3B34541C3934C93029C2D334E08D8533D46E2E420EBA192CC9A6F2F57DF6E5230F7D9FD0DFEE77CFDB1928F277DAF31823B500B846B59');
INSERT INTO "chunks" VALUES(2,2,2,0,1,10,1,4096,4096,419280191,0,5,5,X'05000000000000000100000000',X'6D9588CE48192F4D68B75F54C03E70E3');
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
    change_source TEXT,           -- how it was read: full-read | dirty-bitmap:NAME | changed-blocks:FORMAT
    change_trusted INTEGER,       -- 1: the tracker was trusted (blocks it vouched for were not read)
    change_since TEXT,            -- the tracker checkpoint the change source started at
    change_checkpoint TEXT,       -- the tracker checkpoint this generation was read at
    UNIQUE (volume_id, number)
);
INSERT INTO "generations" VALUES(1,1,1,'ede07fc1-6002-4946-9784-92f0adbd2c27',0,'full','complete',65536,4096,16384,1023,'none',1796410703,1,10,6,40960,40960,'backup','/tmp/v3/root','/tmp/v3/root',65024,2146312,'full-read',0,NULL,NULL);
INSERT INTO "generations" VALUES(2,1,2,'426b5a98-8461-45db-b456-f63c1874f276',1,'incremental','complete',65536,4096,16384,1023,'none',1796410703,1,1,0,4096,4096,'backup','/tmp/v3/root','/tmp/v3/root',65024,2146312,'full-read',0,NULL,NULL);
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
INSERT INTO "media" VALUES(1,'9279fafd-ff13-4f12-9c83-fc12455ffc1c',1,1,'',16384,1796410703,'sim:/tmp/v3/tape.tap');
CREATE TABLE media_sets (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    first_seen INTEGER NOT NULL
);
INSERT INTO "media_sets" VALUES(1,'3cfcff4b-1fd5-49c3-a5c0-cc8ed1f894cc',1796410703);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO "meta" VALUES('schema_version','3');
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
INSERT INTO "volumes" VALUES(1,1,'root','c73cc3e2-26ca-4ff7-8034-dd7af07414d0');
CREATE INDEX chunks_by_generation ON chunks (generation_id, seq);
COMMIT;
