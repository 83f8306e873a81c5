"""download_data.sh against a real HTTP server on 127.0.0.1 serving small generated archives."""
import io
import subprocess
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fewshot.data.datasets import load_dataset

SCRIPT = Path(__file__).resolve().parent.parent / "download_data.sh"


def _tar(root: Path, top: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(root, arcname=top)
    return buf.getvalue()


class _Server:
    def __init__(self):
        self.files, self.cut_once, self.requests, self.ranges = {}, set(), [], True
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Range")))
                data = outer.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = int(self.headers["Range"].split("=")[1].split("-")[0]) \
                    if self.headers.get("Range") and outer.ranges else 0
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if self.path in outer.cut_once:  # send half, then drop the connection
                    outer.cut_once.discard(self.path)
                    self.wfile.write(data[start:len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture()
def server():
    s = _Server()
    yield s
    s.httpd.shutdown()


def _run(tmp_path, *args):
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "DATA_DIR": str(tmp_path / "data"),
                               "HOME": str(tmp_path)})


def test_complete_download_then_nothing_to_do(tmp_path, server, small_world):
    server.files["/16shot.tar.gz"] = _tar(small_world, "ImageNet-1K-16shot")
    res = _run(tmp_path, "imagenet-16shot", server.url + "/16shot.tar.gz")
    assert res.returncode == 0, res.stderr
    target = tmp_path / "data" / "ImageNet-1K-16shot"
    assert (target / ".complete").exists() and load_dataset(target).num_classes == 100
    n = len(server.requests)
    again = _run(tmp_path, "imagenet-16shot", server.url + "/16shot.tar.gz")
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert len(server.requests) == n  # no second download


def test_download_cut_halfway_resumes(tmp_path, server, small_world):
    server.files["/a.tar.gz"] = _tar(small_world / "val", "imagenet-a")
    server.cut_once.add("/a.tar.gz")
    first = _run(tmp_path, "imagenet-a", server.url + "/a.tar.gz")
    assert first.returncode != 0 and "run the same command again to resume" in first.stderr
    part = tmp_path / "data" / "downloads" / "imagenet-a--a.tar.gz.part"
    assert 0 < part.stat().st_size < len(server.files["/a.tar.gz"])
    second = _run(tmp_path, "imagenet-a", server.url + "/a.tar.gz")
    assert second.returncode == 0, second.stderr
    assert server.requests[-1][1] == f"bytes={len(server.files['/a.tar.gz']) // 2}-"  # resumed
    assert (tmp_path / "data" / "imagenet-a" / ".complete").exists()
    assert len(list((tmp_path / "data" / "imagenet-a").iterdir())) == 101  # 100 classes + marker


def test_corrupt_archive_is_refused_and_complete_data_untouched(tmp_path, server, small_world):
    server.files["/r.tar.gz"] = _tar(small_world / "val", "imagenet-r")
    assert _run(tmp_path, "imagenet-r", server.url + "/r.tar.gz").returncode == 0
    before = sorted(p.name for p in (tmp_path / "data" / "imagenet-r").iterdir())
    good = server.files["/r.tar.gz"]
    server.files["/bad.tar.gz"] = good[:100] + b"\0" * (len(good) - 200) + good[-100:]
    res = _run(tmp_path, "imagenet-a", server.url + "/bad.tar.gz")
    assert res.returncode != 0 and "corrupt or truncated" in res.stderr and "bad.tar.gz" in res.stderr
    assert not (tmp_path / "data" / "imagenet-a").exists()
    assert sorted(p.name for p in (tmp_path / "data" / "imagenet-r").iterdir()) == before
    assert not list((tmp_path / "data").glob(".extract-*"))


def test_existing_unmarked_folder_is_never_overwritten(tmp_path, server):
    (tmp_path / "data" / "imagenet-r").mkdir(parents=True)
    (tmp_path / "data" / "imagenet-r" / "mine.txt").write_text("user data")
    res = _run(tmp_path, "imagenet-r", server.url + "/r.tar.gz")
    assert res.returncode != 0 and "check-data" in res.stderr
    assert (tmp_path / "data" / "imagenet-r" / "mine.txt").read_text() == "user data"


def _hostile_tar(entries) -> bytes:
    """A tar.gz from (name, kind, payload): kind "file" (bytes), "dir", or "symlink" (target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.type, info.linkname = tarfile.SYMTYPE, payload
                tar.addfile(info)
    return buf.getvalue()


@pytest.mark.parametrize("entries", [
    [("ImageNet-1K-16shot", "symlink", "/tmp")],  # the whole dataset a link out of data/
    [("d/train/n1/x.JPEG", "symlink", "/etc/passwd"), ("d/val/n1/y.JPEG", "file", b"x"),
     ("d/classnames.txt", "file", b"n1 one\n")],  # an image linked to a system file
    [("d/x.JPEG", "symlink", "/")],
    [("../escaped.txt", "file", b"x"), ("d/classnames.txt", "file", b"n1 one\n")],  # path traversal
], ids=["top-level-link", "image-to-etc-passwd", "link-to-root", "dot-dot"])
def test_hostile_archives_leave_nothing_outside_or_inside(tmp_path, server, entries):
    server.files["/evil.tar.gz"] = _hostile_tar(entries)
    res = _run(tmp_path, "imagenet-16shot", server.url + "/evil.tar.gz")
    assert res.returncode != 0 and "refused" in res.stderr, res.stderr
    assert "unbound variable" not in res.stderr
    data = tmp_path / "data"
    assert not (data / "ImageNet-1K-16shot").exists() and not (data / "ImageNet-1K-16shot").is_symlink()
    assert not list(data.glob(".extract-*")) and not (tmp_path / "escaped.txt").exists()


def test_a_server_without_ranges_restarts_the_download(tmp_path, server, small_world):
    server.files["/a.tar.gz"] = _tar(small_world / "val", "imagenet-a")
    server.cut_once.add("/a.tar.gz")
    server.ranges = False  # ignores Range headers: answers 200 with the whole file
    assert _run(tmp_path, "imagenet-a", server.url + "/a.tar.gz").returncode != 0
    res = _run(tmp_path, "imagenet-a", server.url + "/a.tar.gz")
    assert res.returncode == 0, res.stderr
    assert "does not support resuming" in res.stdout and (tmp_path / "data" / "imagenet-a" / ".complete").exists()


@pytest.mark.parametrize("args, message", [
    (["imagenet-a", "--sha256"], "--sha256 needs a value"),
    (["imagenet-a", "--sha256", "abc"], "expects 64 hex digits"),
    (["imagenet-a", "--bogus"], "unknown option --bogus"),
    (["imagenet-a", "u1", "u2"], "takes one URL"),
    (["nonsense"], "unknown item nonsense"),
])
def test_option_errors_are_one_clean_line(tmp_path, args, message):
    res = _run(tmp_path, *args)
    assert res.returncode != 0 and res.stderr.startswith("error: ") and message in res.stderr
    assert res.stderr.count("\n") == 1 and "unbound" not in res.stderr


def test_a_pinned_checksum_rejects_a_wrong_default_archive(tmp_path, server, small_world):
    script = SCRIPT.read_text()
    assert "3bb3632277e6ba6392ea64c02ddbf4dd2266c9caffd6bc09c9656d28f012589e" in script  # ImageNet-A
    server.files["/a.tar.gz"] = _tar(small_world / "val", "imagenet-a")
    sha = "0" * 64
    res = _run(tmp_path, "imagenet-a", server.url + "/a.tar.gz", "--sha256", sha)
    assert res.returncode != 0 and f"does not have SHA-256 {sha}" in res.stderr
