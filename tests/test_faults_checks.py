"""Fault injection, part B of issue #27: check-data's promises and the download script's errors.

check-data names invisible characters (escaped), refuses class folders linked out of the dataset
and lists empty shifted sets; download_data.sh stops a broken or oversized archive with one
``error:`` line (no Python traceback) and moves a refused download aside so the next run fetches
it anew. Every file present before a command is still there, unchanged.
"""
import io
import os
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from fewshot import cli
from test_download import _Server, _tar  # noqa: F401  (the local HTTP server of test_download)
from test_faults_errors import _files

SCRIPT = Path(__file__).resolve().parent.parent / "download_data.sh"


def _check_data(root, capsys):
    code = cli.main(["check-data", "--no-decode", str(root)])
    out = capsys.readouterr()
    return subprocess.CompletedProcess([], code, out.out, out.err)


@pytest.fixture()
def world(small_world, tmp_path):
    root = tmp_path / "world"
    shutil.copytree(small_world, root, symlinks=True)
    return root


# ----------------------------------------------------------------------------- 16: invisible names
def test_a_byte_order_mark_in_classnames_is_shown_escaped(world, capsys):
    path = world / "classnames.txt"
    path.write_bytes("\ufeff".encode() + path.read_bytes())
    before = _files(world)
    res = _check_data(world, capsys)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "names without a folder: '\\ufeffn90000000'" in res.stdout and "byte-order mark" in res.stdout
    assert _files(world) == before


def test_a_zero_width_space_in_a_folder_name_is_shown_escaped(world, capsys):
    os.rename(world / "train" / "n90000007", world / "train" / "n90000007\u200b")
    res = _check_data(world, capsys)
    assert res.returncode == 1 and "'n90000007\\u200b'" in res.stdout, res.stdout


# ----------------------------------------------------------------------------- 17: linked folders
def test_a_class_folder_linked_out_of_the_dataset_is_refused_once(world, tmp_path, capsys):
    outside = tmp_path / "elsewhere" / "n90000003"
    outside.parent.mkdir()
    shutil.move(world / "train" / "n90000003", outside)
    (world / "train" / "n90000003").symlink_to(outside, target_is_directory=True)
    inside = world / "val" / "n90000004"  # a link that stays inside the dataset is fine
    shutil.move(inside, world / "n90000004-real")
    inside.symlink_to(world / "n90000004-real", target_is_directory=True)
    before = _files(world, outside.parent)
    res = _check_data(world, capsys)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    named = [line for line in res.stdout.splitlines() if "outside the dataset" in line]
    assert named == [f"  {world / 'train' / 'n90000003'}: a link to {outside}, outside the dataset"], res.stdout
    assert _files(world, outside.parent) == before


def test_an_empty_shift_folder_makes_check_data_fail(world, capsys):
    (world / "shift" / "blank").mkdir()
    res = _check_data(world, capsys)
    assert res.returncode == 1 and "shift/blank: shifted test set 'blank' holds no images" in res.stdout
    assert "shifted test set sketch: 100 classes, 100 images" in res.stdout


# ----------------------------------------------------------------------------- 14, 18: downloads
@pytest.fixture()
def server():
    s = _Server()
    yield s
    s.httpd.shutdown()


def _download(tmp_path, *args, limit_kb=None):
    cmd = ["bash", str(SCRIPT), *args]
    if limit_kb:  # a file-size limit: what a zip bomb meets on a small disk, without filling one
        cmd = ["bash", "-c", f"ulimit -f {limit_kb}; exec " + " ".join(f"'{c}'" for c in cmd)]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)})


def _one_error(res) -> str:
    lines = [line for line in res.stderr.splitlines() if "error" in line.lower()]  # not curl's meter
    assert res.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    return lines[0]


def _conflicting_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in [("d/classnames.txt", b"n1 one\n"), ("d/val/n1/x.JPEG", b"x"),
                           ("d/val/n1/x.JPEG/y", b"y")]:  # a file, then a folder of the same name
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _bomb_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("d/classnames.txt", "n1 one\n")
        z.writestr("d/train/n1/big.JPEG", b"\0" * (8 << 20))  # 8 MB from about 8 KB
    return buf.getvalue()


def test_an_archive_with_conflicting_members_is_one_line_and_moved_aside(tmp_path, server, small_world):
    (tmp_path / "data" / "imagenet-r").mkdir(parents=True)
    (tmp_path / "data" / "imagenet-r" / "mine.txt").write_text("kept")
    before = _files(tmp_path / "data")
    server.files["/x.tar.gz"] = _conflicting_tar()
    line = _one_error(_download(tmp_path, "imagenet-16shot", server.url + "/x.tar.gz"))
    assert "member d/val/n1/x.JPEG/y: Not a directory" in line and "moved to" in line
    downloads = tmp_path / "data" / "downloads"
    assert [p.name for p in downloads.iterdir()] == ["imagenet-16shot--x.tar.gz.bad"]
    kept = {p: b for p, b in _files(tmp_path / "data").items() if downloads not in (p, *p.parents)}
    assert kept == before  # the user's folder untouched
    assert not list((tmp_path / "data").glob(".extract-*"))


def test_a_zip_bomb_meeting_a_size_limit_is_one_line_and_the_archive_kept(tmp_path, server):
    server.files["/bomb.zip"] = _bomb_zip()
    line = _one_error(_download(tmp_path, "imagenet-16shot", server.url + "/bomb.zip", limit_kb=1024))
    assert "ran out while extracting (File too large)" in line and "is kept" in line
    assert not (tmp_path / "data" / "ImageNet-1K-16shot").exists() and not list((tmp_path / "data").glob(".extract-*"))


def test_a_refused_download_is_fetched_anew_once_the_server_is_fixed(tmp_path, server, small_world):
    server.files["/16.tar.gz"] = _tar(small_world / "val", "ImageNet-1K-16shot")  # no train/: refused
    line = _one_error(_download(tmp_path, "imagenet-16shot", server.url + "/16.tar.gz"))
    assert "has no train at its top level" in line and "so that the next run downloads it anew" in line
    server.files["/16.tar.gz"] = _tar(small_world, "ImageNet-1K-16shot")  # the server's file fixed
    res = _download(tmp_path, "imagenet-16shot", server.url + "/16.tar.gz")
    assert res.returncode == 0 and (tmp_path / "data" / "ImageNet-1K-16shot" / ".complete").exists(), res.stderr
