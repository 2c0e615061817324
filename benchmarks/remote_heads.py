"""How long an http(s) manifest takes to build: one HEAD per listed file, all at once (xloader)
or one after another (as before), against a server that answers each HEAD after `--delay` s.

    python benchmarks/remote_heads.py [--rows 2000] [--delay 0.01] [--repeats 2]

The files are 1-byte placeholders (only their existence is checked) in a temporary folder with
a manifest, served by Python's `http.server` in its own process on 127.0.0.1. "sequential"
replaces `xloader.storage.locate_all` with one that answers nothing, so the manifest falls
back to checking its rows one by one. Prints wall and client CPU seconds per build.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

SERVER = r"""
import functools, http.server, sys, time
folder, delay, port = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
class Slow(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass
    def do_HEAD(self):
        time.sleep(delay)
        super().do_HEAD()
http.server.ThreadingHTTPServer.request_queue_size = 128  # no SYN dropped (and retried 1 s later)
http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Slow, directory=folder)).serve_forever()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--delay", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import xloader as xl
    from xloader import storage

    result: dict = {"rows": args.rows, "delay_s": args.delay, "load_average_1min": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory() as folder:
        names = [f"c{i % 4}/{i:05d}.jpg" for i in range(args.rows)]
        for name in names:
            os.makedirs(os.path.join(folder, os.path.dirname(name)), exist_ok=True)
            with open(os.path.join(folder, name), "wb") as file:
                file.write(b"x")
        with open(os.path.join(folder, "train.csv"), "w") as file:
            file.write("filename,class\n" + "".join(f"{name},{name[:2]}\n" for name in names))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen([sys.executable, "-c", SERVER, folder, str(args.delay), str(port)])
        concurrent = storage.locate_all
        try:
            time.sleep(1.0)
            for mode, locate_all in (("sequential", lambda base, paths: {}), ("concurrent", concurrent)):
                storage.locate_all = locate_all
                runs = []
                for _ in range(args.repeats):
                    wall, cpu = time.perf_counter(), time.process_time()
                    manifest = xl.ImageManifest(f"http://127.0.0.1:{port}/train.csv", image_size=None)
                    assert len(manifest) == args.rows
                    runs.append([round(time.perf_counter() - wall, 2), round(time.process_time() - cpu, 2)])
                result[f"{mode}_wall_cpu_s"] = runs
        finally:
            storage.locate_all = concurrent
            server.terminate()
            server.wait(10)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
