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
    key_fingerprint TEXT,         -- the key its chunks are encrypted with (1a2b:3c4d:...; NULL: plain)
    UNIQUE (volume_id, number)
);
INSERT INTO "generations" VALUES(1,1,1,'09eecbb1-b6fa-4623-98a7-52ced8da9be7',0,'full','complete',65536,4096,16384,1023,'none',1796413778,1,10,6,40960,40960,'backup','/tmp/v4/root','/tmp/v4/root',65024,2220127,'full-read',0,NULL,NULL,NULL);
INSERT INTO "generations" VALUES(2,1,2,'d9560eb4-79ba-463c-bc32-d453eee34a49',1,'incremental','complete',65536,4096,16384,1023,'none',1796413778,1,1,0,4096,4096,'backup','/tmp/v4/root','/tmp/v4/root',65024,2220127,'full-read',0,NULL,NULL,NULL);
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
INSERT INTO "media" VALUES(1,'74da8343-430f-4679-af25-5b799a2a732b',1,1,'',16384,1796413778,'sim:/tmp/v4/tape.tap');
CREATE TABLE media_sets (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    first_seen INTEGER NOT NULL,
    key_fingerprint TEXT          -- the set's key (1a2b:3c4d:...; NULL: a plain set, or not known yet)
);
INSERT INTO "media_sets" VALUES(1,'15e5e96b-0b53-43dc-8ed2-6d8e27c7c777',1796413778,NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO "meta" VALUES('schema_version','4');
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
INSERT INTO "volumes" VALUES(1,1,'root','1cae05b3-895a-40ad-8b0a-94111b131611');
CREATE INDEX chunks_by_generation ON chunks (generation_id, seq);
COMMIT;
