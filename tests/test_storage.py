"""The storage layer without a server: local folders, memory://, options, redaction, setup errors."""

from __future__ import annotations

import errno
import json
import os
import pickle
import subprocess
import sys
import types
from pathlib import Path

import pytest

from parablur.dataset import list_images
from parablur.errors import ConfigError, DatasetError, ImageError, ObjectError, StorageError
from parablur.files import sha256_file, write_atomic
from parablur.storage import (
    FsspecStore,
    LocalStore,
    RetryPolicy,
    open_store,
    parse_storage_options,
    redact,
    redacted_options,
    secrets_in,
)
from parablur.storage._retry import Kind, classify
from parablur.storage.base import sidecar_key

SRC = Path(__file__).resolve().parents[1] / "src"

# Names whose sorted order differs between "sort each folder by name" and "sort whole paths"
# ('.' < '/' < '0'), with hidden files and folders, non-images and mixed-case suffixes.
TREE = ["a.jpg", "a/x.jpg", "a/y/z.png", "a0.jpg", "a-b.jpg", "B.PNG", "b/c/d.webp", "b c.jpeg",
        "notes.txt", ".hidden.jpg", ".tmp/x.jpg", "a/.cache/q.jpg", "deep/1/2/3/4.tif",
        "u\u00e9/v.bmp", "\u00e9.jpg", "z.JPG"]


def make_tree(root: Path, names=TREE) -> None:
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (i + 1))


def expected_keys(root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in list_images(root)]


# -- local folders --


def test_local_listing_is_a_generator_in_list_images_order(tmp_path):
    root = tmp_path / "in"
    make_tree(root)
    (root / "linked").symlink_to(root / "a", target_is_directory=True)  # not followed, as rglob
    (root / "alias.jpg").symlink_to(root / "a.jpg")  # a link to a file is a file
    store = open_store(root)
    listing = store.list_images()
    assert isinstance(listing, types.GeneratorType)
    assert list(listing) == expected_keys(root)
    assert "alias.jpg" in expected_keys(root)
    for page_size in (1, 2, 5):
        assert list(store.list_images(page_size=page_size)) == expected_keys(root)
    sizes = {info.key: info.size for info in store.scan_images()}
    assert sizes["a/y/z.png"] == (root / "a/y/z.png").stat().st_size


def test_local_listing_errors_match_list_images(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DatasetError) as theirs:
        list_images(missing)
    with pytest.raises(DatasetError) as ours:
        list(open_store(missing).list_images())
    assert str(ours.value) == str(theirs.value)
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(DatasetError, match="not a folder"):
        list(open_store(tmp_path / "file.jpg").list_images())


def test_local_write_replaces_by_rename_like_write_atomic(tmp_path):
    store = open_store(tmp_path / "out")
    store.write("sub/a.jpg", b"first")
    path = tmp_path / "out" / "sub" / "a.jpg"
    inode = path.stat().st_ino
    store.write("sub/a.jpg", b"second")
    assert path.read_bytes() == b"second"
    assert path.stat().st_ino != inode  # a new file renamed over the old one, not rewritten in place
    reference = tmp_path / "ref" / "a.jpg"
    write_atomic(reference, b"second")
    assert sha256_file(reference) == sha256_file(path)
    assert sorted(p.name for p in (tmp_path / "out" / "sub").iterdir()) == ["a.jpg"]


def test_local_metadata_sidecar_round_trip_and_staleness(tmp_path):
    store = open_store(tmp_path)
    store.write("o/a.jpg", b"blurred", metadata={"parablur-input-etag": "abc", "parablur-v": "1"})
    info = store.info("o/a.jpg")
    assert info.size == 7 and info.etag == sha256_file(tmp_path / "o" / "a.jpg")
    assert dict(info.metadata) == {"parablur-input-etag": "abc", "parablur-v": "1"}
    assert (tmp_path / sidecar_key("o/a.jpg")).name == ".a.jpg.parablur-meta.json"
    assert list(store.list_images()) == ["o/a.jpg"]  # the sidecar is hidden
    # A body rewritten without its sidecar (or by someone else) no longer carries the old record.
    write_atomic(tmp_path / "o" / "a.jpg", b"changed")
    assert dict(store.info("o/a.jpg").metadata) == {}
    assert store.info("o/missing.jpg") is None


def test_local_keys_cannot_escape_the_root(tmp_path):
    store = open_store(tmp_path / "out")
    for key in ("../x.jpg", "/etc/x.jpg", "a//b.jpg", "a/./b.jpg", "", "a/../../b.jpg"):
        with pytest.raises(ConfigError):
            store.write(key, b"x")
    assert not (tmp_path / "x.jpg").exists()
    assert not (tmp_path / "out").exists()


def test_local_missing_object_is_an_error_for_that_object_only(tmp_path):
    make_tree(tmp_path)
    store = open_store(tmp_path)
    with pytest.raises(ObjectError) as caught:
        store.read("gone.jpg")
    assert isinstance(caught.value, ImageError) and isinstance(caught.value, OSError)
    assert "gone.jpg: not found" in str(caught.value)
    assert store.read("a.jpg") == b"x"


def test_local_probes(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no images found"):
        open_store(empty).probe_read()
    make_tree(tmp_path / "in")
    assert open_store(tmp_path / "in").probe_read() == expected_keys(tmp_path / "in")[0]
    out = tmp_path / "out"
    open_store(out).probe_write()
    assert list(out.iterdir()) == []  # the probe was removed


def test_file_url_is_a_local_folder(tmp_path):
    store = open_store(f"file://{tmp_path}")
    assert isinstance(store, LocalStore) and store.root == tmp_path


# -- memory:// (the generic fsspec path: other backends than S3) --


def test_memory_store_lists_in_key_order_and_round_trips(tmp_path):
    make_tree(tmp_path)
    root = f"memory://parablur-test-{os.getpid()}/in"
    store = open_store(root)
    for name in TREE:
        store.fs.pipe_file(f"{store.root}/{name}", (tmp_path / name).read_bytes())
    expected = expected_keys(tmp_path)
    assert list(store.list_images()) == expected
    assert list(store.list_images(page_size=3)) == expected
    store.write("out/a.jpg", b"data", metadata={"parablur-params": "s=3"})
    info = store.info("out/a.jpg")
    assert (info.size, dict(info.metadata)) == (4, {"parablur-params": "s=3"})
    store.write("out/a.jpg", b"other")  # a new body without a record: the old record is stale
    assert dict(store.info("out/a.jpg").metadata) == {}
    assert store.info("out/none.jpg") is None
    store.probe_write()
    assert not [k for k in store.fs.find(store.root) if ".parablur-probe-" in k]


def test_memory_delete_tree_takes_brackets_in_a_location_literally():
    base = f"memory://parablur-glob-{os.getpid()}"
    check_delete_tree_takes_brackets_literally(open_store(f"{base}/photos [2024]/seq"),
                                              open_store(f"{base}/photos 2/seq"))


def check_delete_tree_takes_brackets_literally(mine, other) -> None:
    """A location named 'photos [2024]' (``mine``) is not a glob pattern: its hidden prefix goes,
    and that of 'photos 2' (``other``, which the pattern would match) stays."""
    for store in (mine, other):
        store.write(".parablur-review-originals/a.jpg", b"face crops")
        store.write("kept.jpg", b"output")
    mine.delete_tree(".parablur-review-originals")
    assert mine.info(".parablur-review-originals/a.jpg") is None and mine.info("kept.jpg") is not None
    assert other.read(".parablur-review-originals/a.jpg") == b"face crops"


def test_memory_claim_output_refuses_foreign_objects():
    base = f"memory://parablur-claim-{os.getpid()}"
    fresh = open_store(f"{base}/new")
    fresh.claim_output()
    fresh.claim_output()  # ours already
    taken = open_store(f"{base}/taken")
    taken.fs.pipe_file(f"{taken.root}/user.jpg", b"user data")
    with pytest.raises(DatasetError, match="refusing to write into"):
        taken.claim_output()
    assert taken.read("user.jpg") == b"user data"


# -- storage options, credentials --


def test_parse_storage_options_inline_and_file(tmp_path):
    assert parse_storage_options(None) == {}
    assert parse_storage_options('{"key": "k", "client_kwargs": {"endpoint_url": "http://h"}}') == {
        "key": "k", "client_kwargs": {"endpoint_url": "http://h"}}
    path = tmp_path / "s3.json"
    path.write_text(json.dumps({"anon": True}))
    assert parse_storage_options(f"@{path}") == {"anon": True}


@pytest.mark.parametrize("text, message", [
    ('{"secret": "hunter22", ', "--storage-options is not valid JSON: "),
    ('["secret"]', "--storage-options must be a JSON object, got list"),
    ("@/nonexistent/s3.json", "--storage-options file not found: /nonexistent/s3.json"),
])
def test_parse_storage_options_errors_are_one_line(text, message):
    with pytest.raises(ConfigError) as caught:
        parse_storage_options(text)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value) and "hunter22" not in str(caught.value)
    assert caught.value.exit_code == 2


def test_credentials_are_masked_everywhere():
    options = {"key": "AKIAEXAMPLE", "secret": "s3cr3t-value",
               "client_kwargs": {"endpoint_url": "http://127.0.0.1:9", "aws_session_token": "tok-123"},
               "anon": False}
    found = secrets_in(options, ["s3://user:url-pass@bucket/x"])
    assert {"AKIAEXAMPLE", "s3cr3t-value", "tok-123", "url-pass"} <= found
    text = "failed with s3cr3t-value and tok-123 at s3://user:url-pass@bucket/x by AKIAEXAMPLE"
    masked = redact(text, found)
    for secret in ("s3cr3t-value", "tok-123", "url-pass", "AKIAEXAMPLE"):
        assert secret not in masked
    assert "http://user:***@h/x" == redact("http://user:pw@h/x")
    assert redact("photos s3", {"s"}) == "photos s3"  # too short to mask inside words
    shown = redacted_options(options)
    assert shown["secret"] == "***" and shown["client_kwargs"]["aws_session_token"] == "***"
    assert shown["client_kwargs"]["endpoint_url"] == "http://127.0.0.1:9" and shown["anon"] is False
    store = FsspecStore("memory://bucket/x", options)
    for text in (repr(store), store.url, store.location("a.jpg")):
        assert "s3cr3t-value" not in text and "tok-123" not in text and "AKIAEXAMPLE" not in text


def test_store_pickles_to_its_url_and_options_only():
    store = FsspecStore("memory://bucket/pickled", {"skip_instance_cache": True})
    store.fs.pipe_file(f"{store.root}/a.jpg", b"abc")  # the filesystem is made and cached
    data = pickle.dumps(store)
    assert len(data) < 600
    assert b"MemoryFileSystem" not in data
    clone = pickle.loads(data)
    assert clone.read("a.jpg") == b"abc"  # same process: the cached filesystem
    local = pickle.loads(pickle.dumps(LocalStore("/tmp/x", RetryPolicy(attempts=2))))
    assert local.root == Path("/tmp/x") and local.retry.attempts == 2


# -- setup errors --


def test_unknown_scheme_is_one_line_exit_2():
    with pytest.raises(StorageError) as caught:
        open_store("nosuchscheme://bucket/x", {"secret": "zzz-secret"})
    message = str(caught.value)
    assert message.startswith("unknown storage scheme 'nosuchscheme://'")
    assert caught.value.exit_code == 2 and "\n" not in message


@pytest.mark.slow
def test_missing_extra_names_the_extra_to_install():
    # A real missing package: a fresh interpreter in which importing s3fs fails.
    script = """
import sys
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name == "s3fs" or name.startswith("s3fs."):
            raise ModuleNotFoundError("No module named 's3fs'", name="s3fs")
sys.meta_path.insert(0, Hide())
from parablur.errors import ParaBlurError
from parablur.storage import open_store
try:
    open_store("s3://bucket/in", {"secret": "never-shown"})
except ParaBlurError as exc:
    print(exc.exit_code, exc)
"""
    env = dict(os.environ, PYTHONPATH=str(SRC))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line.startswith("2 s3:// needs a package that is not installed: install parablur[s3]")
    assert "\n" not in line and "never-shown" not in line


def test_credentials_in_a_cloud_url_are_refused_without_showing_them():
    with pytest.raises(ConfigError) as caught:
        open_store("s3://someone:pw-secret-123@photos/in", {})
    message = str(caught.value)
    assert message.startswith("credentials in a s3:// URL are not supported")
    assert "pw-secret-123" not in message and "s3://someone:***@photos/in" in message


@pytest.mark.parametrize("url, extra, module", [("gs://bucket/in", "gcs", "gcsfs"),
                                                ("az://container/in", "azure", "adlfs")])
def test_uninstalled_cloud_backends_name_their_extra(url, extra, module):
    import importlib.util

    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")
    with pytest.raises(StorageError) as caught:
        open_store(url, {})
    assert f"needs a package that is not installed: install parablur[{extra}]" in str(caught.value)
    assert caught.value.exit_code == 2


def test_s3_location_needs_a_bucket():
    with pytest.raises(ConfigError, match="needs a bucket"):
        open_store("s3://", {})


def test_retry_policy_rules():
    with pytest.raises(ConfigError, match="attempts must be >= 1, got 0"):
        RetryPolicy(attempts=0)
    policy = RetryPolicy(attempts=3, base_s=0.1, max_s=0.3)
    assert 0.1 <= policy.wait_s(1) <= 0.2 and policy.wait_s(10) == 0.3


@pytest.mark.parametrize("exc, kind", [
    (ConnectionResetError(errno.ECONNRESET, "reset"), Kind.TRANSIENT),
    (TimeoutError("timed out"), Kind.TRANSIENT),
    (OSError(errno.EBUSY, "Please reduce your request rate."), Kind.TRANSIENT),  # s3fs's SlowDown
    (PermissionError("Access Denied."), Kind.DENIED),
    (FileNotFoundError("a/b.jpg"), Kind.NOT_FOUND),
    (ValueError("bad"), Kind.OTHER),
])
def test_classify_builtin_errors(exc, kind):
    assert classify(exc) is kind
