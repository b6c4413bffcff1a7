# A fake `mtx` for tests that keeps a changer's state in <script>.json and answers like
# mtx 1.3.12 did against the lab's changer (same output formats and error messages, taken
# from the lab-tgt-*.transcript captures). State: {"device": "/dev/sgX", "slots": {"1":
# "BARCODE" or "" (full, no label) or null}, "ie": [slot numbers], "drives": {"0": null or
# ["BARCODE", source_slot]}, "log": optional path to append argv to}.
import json
import os
import sys

path = os.path.splitext(os.path.abspath(__file__))[0] + ".json"
with open(path) as f:
    st = json.load(f)
args = sys.argv[1:]
if st.get("log"):
    with open(st["log"], "a") as f:
        f.write(json.dumps(args) + "\n")


def die(msg, out=""):
    sys.stdout.write(out)
    sys.stderr.write(msg + "\n")
    sys.exit(1)


def save():
    with open(path + ".tmp", "w") as f:
        json.dump(st, f)
    os.replace(path + ".tmp", path)


if len(args) < 2 or args[0] != "-f":
    die("No SCSI device")
if args[1] != st["device"]:
    die(f"cannot open SCSI device '{args[1]}' - No such file or directory")
args = args[2:]
slots, drives, ie = st["slots"], st["drives"], set(st.get("ie", []))
nslots, ndrives = len(slots), len(drives)


def pad(t):
    return t + " " * max(0, 32 - len(t))


def num(text, what, cmd, lo, hi, illegal="Invalid"):
    try:
        n = int(text)
    except ValueError:
        n = -1
    if not lo <= n <= hi:
        die(f"{illegal} <{what}> argument '{text}' to '{cmd}' command")
    return n


if args == ["status"]:
    out = [f"  Storage Changer {st['device']}:{ndrives} Drives, {nslots} Slots ( {len(ie)} Import/Export )"]
    for i in range(ndrives):
        d = drives[str(i)]
        if d is None:
            out.append(f"Data Transfer Element {i}:Empty")
        else:
            tag = f":VolumeTag = {pad(d[0])}" if d[0] else ""
            out.append(f"Data Transfer Element {i}:Full (Storage Element {d[1]} Loaded){tag}")
    for k in range(1, nslots + 1):
        b = slots[str(k)]
        kind = " IMPORT/EXPORT" if k in ie else ""
        if b is None:
            out.append(f"      Storage Element {k}{kind}:Empty:VolumeTag={pad('')}")
        elif b == "":
            out.append(f"      Storage Element {k}{kind}:Full ")
        else:
            out.append(f"      Storage Element {k}{kind}:Full :VolumeTag={pad(b)}")
    print("\n".join(out))
    sys.exit(0)
if args and args[0] == "load" and len(args) in (2, 3):
    if args[1] == "0":
        die("No source specified")
    s = num(args[1], "storage-element-number", "load", 1, nslots)
    d = num(args[2] if len(args) == 3 else "0", "drive-number", "load", 0, ndrives - 1, "illegal")
    if drives[str(d)] is not None:
        die(f"Drive {d} Full (Storage Element {drives[str(d)][1]} loaded)")
    if slots[str(s)] is None:
        die(f"Source Element Address {999 + s} is Empty", f"Loading media from Storage Element {s} into drive {d}...")
    drives[str(d)] = [slots[str(s)], s]
    slots[str(s)] = None
    save()
    print(f"Loading media from Storage Element {s} into drive {d}...done")
    sys.exit(0)
if args and args[0] == "unload" and len(args) <= 3:
    d = num(args[2] if len(args) == 3 else "0", "drive-number", "unload", 0, ndrives - 1, "illegal")
    if drives[str(d)] is None:
        die(f"Data Transfer Element {d} is Empty")
    s = num(args[1], "storage-element-number", "unload", 1, nslots, "illegal") if len(args) >= 2 else drives[str(d)][1]
    if slots[str(s)] is not None:
        die(f"Storage Element {s} is Already Full")
    slots[str(s)] = drives[str(d)][0]
    drives[str(d)] = None
    save()
    print(f"Unloading drive {d} into Storage Element {s}...done")
    sys.exit(0)
die("Usage:\n\tmtx --version")
