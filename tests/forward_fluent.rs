//! The `fluent` sink against an independent Fluent Forward v1 decoder
//! written in Python with the `msgpack` package (scripts/requirements-test.txt),
//! following the published spec: Message, Forward, PackedForward and
//! CompressedPackedForward modes, EventTime ext type 0, `size` checked and
//! `{"ack": chunk}` answered. The same decoder must accept what the
//! `fluent-logger` package sends, which shows the decoder itself is right.

mod fwd;
mod gen;
mod support;

use fwd::{free_port, last_value, sink_test, sink_test_id, wait_for_port, write_config, Guard};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DECODER: &str = r#"
import gzip, io, json, socket, struct, sys, threading
import msgpack

def event_time(t):
    if isinstance(t, int):
        return float(t)
    if isinstance(t, msgpack.ExtType) and t.code == 0 and len(t.data) == 8:
        sec, nsec = struct.unpack(">II", t.data)
        return sec + nsec / 1e9
    raise ValueError("time is neither an integer nor EventTime ext 0: %r" % (t,))

def entries_of(stream_bytes):
    out = []
    for entry in msgpack.Unpacker(io.BytesIO(stream_bytes), raw=False, strict_map_key=False):
        if not isinstance(entry, (list, tuple)) or len(entry) != 2:
            raise ValueError("entry is not [time, record]")
        out.append(entry)
    return out

def decode(msg):
    if not isinstance(msg, (list, tuple)) or len(msg) not in (2, 3, 4):
        raise ValueError("message is not an array of 2-4 items")
    tag = msg[0]
    if not isinstance(tag, str):
        raise ValueError("tag is not a string")
    second = msg[1]
    # ExtType is a namedtuple: test for EventTime before the array form.
    if isinstance(second, (int, msgpack.ExtType)):
        mode, entries = "Message", [[second, msg[2]]]
        option = msg[3] if len(msg) > 3 else {}
    elif isinstance(second, (bytes, str)):
        option = msg[2] if len(msg) > 2 else {}
        data = second.encode() if isinstance(second, str) else second
        if option.get("compressed") == "gzip":
            mode, data = "CompressedPackedForward", gzip.decompress(data)
        else:
            mode = "PackedForward"
        entries = entries_of(data)
    elif isinstance(second, (list, tuple)):
        mode, entries = "Forward", list(second)
        option = msg[2] if len(msg) > 2 else {}
    else:
        raise ValueError("second item is neither time, entries nor a packed stream")
    if not isinstance(option, dict):
        raise ValueError("option is not a map")
    if "size" in option and option["size"] != len(entries):
        raise ValueError("size %r but %d entries" % (option["size"], len(entries)))
    records = []
    for t, record in entries:
        if not isinstance(record, dict):
            raise ValueError("record is not a map")
        records.append({"tag": tag, "mode": mode, "time": event_time(t), "record": record})
    return records, option

def serve(conn, out, lock):
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    while True:
        data = conn.recv(65536)
        if not data:
            return
        unpacker.feed(data)
        for msg in unpacker:
            try:
                records, option = decode(msg)
            except Exception as e:
                with lock:
                    out.write(json.dumps({"error": str(e)}) + "\n"); out.flush()
                return
            with lock:
                for r in records:
                    out.write(json.dumps(r, default=repr) + "\n")
                out.flush()
            if "chunk" in option:
                conn.sendall(msgpack.packb({"ack": option["chunk"]}))

def main():
    if sys.argv[1] == "server":
        port, path = int(sys.argv[2]), sys.argv[3]
        out, lock = open(path, "a"), threading.Lock()
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port)); s.listen(16)
        while True:
            conn, _ = s.accept()
            threading.Thread(target=serve, args=(conn, out, lock), daemon=True).start()
    else:
        from fluent import sender
        port = int(sys.argv[2])
        for precise in (False, True):
            logger = sender.FluentSender("app", host="127.0.0.1", port=port, nanosecond_precision=precise)
            if not logger.emit("check", {"from": "fluent-logger", "precise": precise}):
                raise SystemExit("fluent-logger could not send: %r" % (logger.last_error,))
            logger.close()

main()
"#;

fn start_decoder(dir: &Path, port: u16) -> (Guard, std::path::PathBuf) {
    let script = dir.join("forward_decoder.py");
    std::fs::write(&script, DECODER).unwrap();
    let out = dir.join("decoded.jsonl");
    let log = std::fs::File::create(dir.join("decoder.log")).unwrap();
    let guard = Guard::spawn(
        Command::new(support::test_python())
            .arg(&script)
            .arg("server")
            .arg(port.to_string())
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log)),
    );
    wait_for_port(port, Duration::from_secs(10));
    (guard, out)
}

fn decoded(path: &Path, n: usize) -> Vec<serde_json::Value> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let values: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("decoder output is JSON"))
            .collect();
        if values.len() >= n || start.elapsed() > Duration::from_secs(10) {
            return values;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn fluent_sink_packed_forward_is_decoded_and_acked_by_an_independent_decoder() {
    let dir = support::scratch_dir("forward_fluent");
    let port = free_port();
    let (_decoder, out) = start_decoder(&dir, port);

    // The reference client first: the decoder must accept Forward messages
    // it did not write itself.
    let status = Command::new(support::test_python())
        .arg(dir.join("forward_decoder.py"))
        .arg("client")
        .arg(port.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "fluent-logger client failed");
    let reference = decoded(&out, 2);
    assert_eq!(reference.len(), 2, "{reference:?}");
    for r in &reference {
        assert!(
            r.get("error").is_none(),
            "decoder rejected fluent-logger: {r}"
        );
        assert_eq!(r["tag"], "app.check");
        assert_eq!(r["mode"], "Message");
        assert_eq!(r["record"]["from"], "fluent-logger");
    }

    let config = write_config(
        &dir,
        "",
        &format!(
            "[[events.sinks]]\ntype = \"fluent\"\naddress = \"127.0.0.1:{port}\"\ntag = \"apisensor.test\"\nbatch_events = 100\n"
        ),
    );
    let (mut run, stderr) = sink_test(
        &config,
        &dir,
        "sink-test",
        &["--count", "250", "--rate", "0"],
    );
    let code = run.wait(Duration::from_secs(60));
    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
    assert_eq!(code, Some(0), "{log}");
    // Acked means the decoder answered with our chunk id for every batch.
    assert_eq!(last_value(&stderr, "acked="), Some(250), "{log}");
    let all = decoded(&out, 252);
    let ours: Vec<&serde_json::Value> = all.iter().skip(2).collect();
    assert_eq!(ours.len(), 250);
    for (seq, r) in ours.iter().enumerate() {
        assert!(
            r.get("error").is_none(),
            "decoder rejected our message: {r}"
        );
        assert_eq!(r["tag"], "apisensor.test");
        assert_eq!(r["mode"], "PackedForward");
        assert_eq!(r["record"]["id"], sink_test_id("sink-test", seq as u64));
        assert_eq!(r["record"]["schema_version"], 1);
        let time = r["time"].as_f64().unwrap();
        let event_ms = r["record"]["time"].as_u64().unwrap() as f64;
        assert!(
            (time * 1000.0 - event_ms).abs() < 1.0,
            "EventTime {time} vs {event_ms}"
        );
    }
}
