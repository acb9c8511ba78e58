#!/usr/bin/env bash
# Regenerates fixtures/corpus-truth/tshark-desegment-body-off.jsonl.gz: tshark's
# HTTP dissection of every trace in ../shared/corpus/zeek-http/ with
# `-o http.desegment_body:FALSE`, i.e. each message reported when its header
# is complete instead of only once its whole body arrived. Same tshark (4.0.17,
# Debian 4.0.17-0+deb12u3) and same converter (the corpus' own
# tools/tshark_http_jsonl.py, via its TSHARK_EXTRA_OPTS switch) as the corpus'
# shipped .tshark.jsonl files; each line is one converter object plus a
# "trace" key naming its capture. Needs tshark: apt-get install -y tshark.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=../shared/corpus
out=fixtures/corpus-truth/tshark-desegment-body-off.jsonl.gz
command -v tshark >/dev/null || { echo "tshark is not installed (apt-get install -y tshark)" >&2; exit 1; }
tshark --version | head -1 | grep -q 'TShark (Wireshark) 4.0.17' ||
  echo "warning: not tshark 4.0.17, the corpus truth was made with 4.0.17" >&2
python3 - "$corpus" "$out" <<'PY'
import glob, gzip, json, os, subprocess, sys
corpus, out = sys.argv[1], sys.argv[2]
env = dict(os.environ, TSHARK_EXTRA_OPTS="-o http.desegment_body:FALSE")
lines = []
for path in sorted(glob.glob(f"{corpus}/zeek-http/*.pcap") + glob.glob(f"{corpus}/zeek-http/*.pcapng")):
    trace = os.path.basename(path).rsplit(".", 1)[0]
    text = subprocess.run([sys.executable, f"{corpus}/tools/tshark_http_jsonl.py", path],
                          env=env, check=True, capture_output=True, text=True).stdout
    for line in text.splitlines():
        if line.strip():
            lines.append(json.dumps({"trace": trace, **json.loads(line)}, separators=(",", ":")))
# mtime 0: the same input gives the same bytes.
with gzip.GzipFile(out, "wb", compresslevel=9, mtime=0) as f:
    f.write(("\n".join(lines) + "\n").encode())
print(f"{out}: {len(lines)} objects")
PY
