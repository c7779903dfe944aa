"""The storage layer against a real S3 store: SeaweedFS on 127.0.0.1 (conftest's session fixture)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from seaweed import BUCKET, READER, FlakyProxy

from parablur.errors import DatasetError, ObjectError, StorageError
from parablur.storage import RetryPolicy, open_store

SRC = Path(__file__).resolve().parents[1] / "src"
FAST = RetryPolicy(attempts=5, base_s=0.01, max_s=0.05)


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def proxy(seaweed):
    made = []

    def make(failures: int = 0, mode: str = "reset") -> FlakyProxy:
        made.append(FlakyProxy(seaweed.s3_port, failures, mode))
        return made[-1]

    yield make
    for item in made:
        item.close()


def lists(requests: list[str]) -> int:
    return sum(1 for line in requests if line.startswith("GET ") and "list-type=2" in line)


@pytest.mark.slow
def test_listing_pages_arrive_in_key_order_before_the_listing_ends(seaweed, prefix, proxy):
    # 1,204 keys (SeaweedFS takes ~200 small PUTs/s here): more than one 1,000-key page.
    names = [f"img_{i:05d}.jpg" for i in range(1200)]
    extra = {"notes.txt": b"n", ".hidden.jpg": b"h", "sub/.tmp.jpg": b"t", "sub/z.png": b"z"}
    seaweed.client().pipe({f"{BUCKET}/{prefix}/{n}": b"%d" % i for i, n in enumerate(names)}
                          | {f"{BUCKET}/{prefix}/{k}": v for k, v in extra.items()})
    flaky = proxy()
    store = open_store(f"s3://{BUCKET}/{prefix}", seaweed.options(endpoint=flaky.endpoint), retry=FAST)

    listing = store.list_images()
    assert next(listing) == "img_00000.jpg"
    assert lists(flaky.requests) == 1  # one page fetched, the last 204 keys not yet asked for
    rest = list(listing)
    assert ["img_00000.jpg", *rest] == [*names, "sub/z.png"]  # S3 key order, hidden and .txt skipped
    assert lists(flaky.requests) == 2  # 1,204 keys: pages of at most 1,000

    before = lists(flaky.requests)
    infos = list(store.scan_images(page_size=300))
    assert lists(flaky.requests) - before == 5  # ceil(1,204 / 300)
    assert [i.key for i in infos] == [*names, "sub/z.png"]
    assert infos[7].size == 1 and infos[7].etag  # size and ETag come with the listing


def test_listing_sees_keys_added_after_the_first_page(seaweed, prefix):
    # The listing is lazy: a key stored after the first page was read still shows up.
    client = seaweed.client()
    client.pipe({f"{BUCKET}/{prefix}/a{i:03d}.jpg": b"x" for i in range(30)})
    store = open_store(f"s3://{BUCKET}/{prefix}", seaweed.options())
    listing = store.list_images(page_size=10)
    assert next(listing) == "a000.jpg"
    client.pipe_file(f"{BUCKET}/{prefix}/zz-late.jpg", b"late")
    assert list(listing)[-1] == "zz-late.jpg"


def test_read_write_info_round_trip_with_metadata(seaweed, prefix):
    store = open_store(f"s3://{BUCKET}/{prefix}", seaweed.options())
    data = os.urandom(70_000)
    meta = {"parablur-input-etag": "0123abcd", "parablur-params": '{"sigma": 3.0}'}
    store.write("out/a.jpg", data, metadata=meta)
    assert store.read("out/a.jpg") == data
    assert store.read("out/a.jpg", length=100) == data[:100]
    info = store.info("out/a.jpg")
    assert info.size == len(data) and dict(info.metadata) == meta
    import hashlib

    assert info.etag == hashlib.md5(data).hexdigest()  # a single PUT's ETag is its MD5
    store.write("out/a.jpg", b"new")  # a new body replaces its record with it
    again = store.info("out/a.jpg")
    assert (again.size, dict(again.metadata)) == (3, {})
    assert store.info("out/missing.jpg") is None
    store.write("out/empty.jpg", b"")
    assert store.read("out/empty.jpg", length=10) == b""


def test_write_is_one_put_to_the_final_key(seaweed, prefix, proxy):
    flaky = proxy()
    store = open_store(f"s3://{BUCKET}/{prefix}", seaweed.options(endpoint=flaky.endpoint))
    keys = ["a.jpg", "d/b.png", "d/e/c.webp"]
    for i, key in enumerate(keys):
        store.write(key, b"x" * (1000 * (i + 1)), metadata={"parablur-n": str(i)})
    assert flaky.requests == [f"PUT /{BUCKET}/{prefix}/{key}" for key in keys]
    assert sorted(seaweed.keys(prefix)) == sorted(f"{prefix}/{key}" for key in keys)


def test_probes(seaweed, prefix, proxy):
    seaweed.client().pipe({f"{BUCKET}/{prefix}/in/b.jpg": b"b" * 200_000,
                           f"{BUCKET}/{prefix}/in/a.txt": b"a"})
    store = open_store(f"s3://{BUCKET}/{prefix}/in", seaweed.options())
    assert store.probe_read() == "b.jpg"
    with pytest.raises(DatasetError, match=f"no images found in s3://{BUCKET}/{prefix}/nothing"):
        open_store(f"s3://{BUCKET}/{prefix}/nothing", seaweed.options()).probe_read()
    flaky = proxy()
    out = open_store(f"s3://{BUCKET}/{prefix}/out", seaweed.options(endpoint=flaky.endpoint))
    out.probe_write()
    verbs = [line.split()[0] for line in flaky.requests]
    assert verbs == ["PUT", "GET", "DELETE"]
    assert seaweed.keys(f"{prefix}/out") == []  # the probe object is gone


def _setup_error(store_call) -> StorageError:
    with pytest.raises(StorageError) as caught:
        store_call()
    error = caught.value
    assert error.exit_code == 2 and "\n" not in str(error)
    return error


def test_bad_setups_are_one_line_exit_2_without_credentials(seaweed, prefix):
    secret = "wrong-secret-4c1f"
    cases = {
        "missing bucket": (f"s3://no-such-bucket-{prefix}/in", seaweed.options(), "read",
                           "the bucket does not exist (NoSuchBucket"),
        "wrong secret": (f"s3://{BUCKET}/in", seaweed.options(secret=secret), "read",
                         "the credentials were refused (SignatureDoesNotMatch"),
        "wrong key": (f"s3://{BUCKET}/in", seaweed.options(key="NOSUCHKEYID42"), "read",
                      "the credentials were refused (InvalidAccessKeyId"),
        "read-only identity": (f"s3://{BUCKET}/{prefix}", seaweed.options(reader=True), "write",
                               "access denied (AccessDenied"),
        "missing bucket, write": (f"s3://no-such-bucket-{prefix}/out", seaweed.options(), "write",
                                  "the bucket does not exist"),
    }
    for name, (url, options, probe, expected) in cases.items():
        store = open_store(url, options, retry=FAST)
        error = _setup_error(store.probe_read if probe == "read" else store.probe_write)
        assert expected in str(error), (name, str(error))
        for value in (secret, seaweed.options()["secret"], READER[1]):
            assert value not in str(error) and value not in repr(store), name
    assert seaweed.keys(prefix) == []  # the denied probe wrote nothing


def test_unreachable_endpoint_gives_up_after_bounded_attempts(seaweed):
    from ingestion_support import closed_port

    store = open_store(f"s3://{BUCKET}/in", seaweed.options(endpoint=f"http://127.0.0.1:{closed_port()}"),
                       retry=RetryPolicy(attempts=3, base_s=0.01, max_s=0.02))
    error = _setup_error(store.probe_read)
    assert "gave up after 3 attempts" in str(error)


@pytest.mark.parametrize("mode", ["reset", "slowdown"])
def test_transient_errors_are_retried_with_backoff(seaweed, prefix, proxy, mode):
    # aiohttp itself re-sends a GET once when the connection drops before the reply, so
    # three resets are more than one attempt can absorb; botocore's retries are off.
    seaweed.client().pipe_file(f"{BUCKET}/{prefix}/a.jpg", b"payload")
    url = f"s3://{BUCKET}/{prefix}"
    flaky = proxy(failures=3, mode=mode)
    store = open_store(url, seaweed.options(endpoint=flaky.endpoint), retry=FAST)
    assert store.read("a.jpg") == b"payload"
    assert flaky.failed == 3
    assert flaky.requests.count(f"GET /{BUCKET}/{prefix}/a.jpg") == 4  # 3 failed, then served

    flaky = proxy(failures=3, mode=mode)
    store = open_store(url, seaweed.options(endpoint=flaky.endpoint), retry=FAST)
    store.write("b.jpg", b"written through failures")
    assert flaky.failed == 3
    assert seaweed.client().cat_file(f"{BUCKET}/{prefix}/b.jpg") == b"written through failures"

    spent = proxy(failures=3, mode=mode)
    once = open_store(url, seaweed.options(endpoint=spent.endpoint), retry=RetryPolicy(attempts=1))
    with pytest.raises(ObjectError, match="gave up after 1 attempts"):
        once.read("a.jpg")


def test_a_missing_object_fails_alone(seaweed, prefix):
    client = seaweed.client()
    client.pipe({f"{BUCKET}/{prefix}/{n}.jpg": n.encode() for n in ("a", "c")})
    store = open_store(f"s3://{BUCKET}/{prefix}", seaweed.options(), retry=FAST)
    results = {}
    for key in ("a.jpg", "b.jpg", "c.jpg"):
        try:
            results[key] = store.read(key)
        except ObjectError as exc:  # what the workload catches (an OSError) and records
            results[key] = str(exc)
    assert results == {"a.jpg": b"a", "b.jpg": f"cannot read s3://{BUCKET}/{prefix}/b.jpg: not found",
                       "c.jpg": b"c"}


@pytest.mark.slow
def test_store_unpickled_in_another_process_opens_its_own_filesystem(seaweed, prefix):
    seaweed.client().pipe_file(f"{BUCKET}/{prefix}/k.jpg", b"from the store")
    store = open_store(f"s3://{BUCKET}/{prefix}", seaweed.options())
    assert store.read("k.jpg") == b"from the store"  # this process has made its filesystem
    data = pickle.dumps(store)
    assert len(data) < 1000 and b"S3FileSystem" not in data
    script = ("import pickle, sys; s = pickle.loads(sys.stdin.buffer.read()); "
              "sys.stdout.buffer.write(s.read('k.jpg'))")
    out = subprocess.run([sys.executable, "-c", script], input=data, capture_output=True,
                         env=dict(os.environ, PYTHONPATH=str(SRC)), timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"from the store"


def test_claim_output_marks_a_new_prefix_and_refuses_a_users(seaweed, prefix):
    store = open_store(f"s3://{BUCKET}/{prefix}/out", seaweed.options())
    store.claim_output()
    store.claim_output()
    assert seaweed.keys(f"{prefix}/out") == [f"{prefix}/out/.parablur-output"]
    seaweed.client().pipe_file(f"{BUCKET}/{prefix}/users/photo.jpg", b"mine")
    with pytest.raises(DatasetError, match="refusing to write into"):
        open_store(f"s3://{BUCKET}/{prefix}/users", seaweed.options()).claim_output()
    assert seaweed.keys(f"{prefix}/users") == [f"{prefix}/users/photo.jpg"]


@pytest.mark.slow
def test_seaweed_fixture_stops_its_server_by_pid(tmp_path):
    import socket

    import psutil
    from seaweed import start_seaweed

    server = start_seaweed(tmp_path / "own")
    process = psutil.Process(server.process.pid)
    family = [process, *process.children(recursive=True)]
    assert server.client().call_s3("list_objects_v2", Bucket=BUCKET, MaxKeys=1)["KeyCount"] == 0
    server.stop()
    assert server.process.returncode is not None
    assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    with pytest.raises(ConnectionRefusedError):  # nothing listens on its S3 port any more
        socket.create_connection(("127.0.0.1", server.s3_port), timeout=2).close()


def test_delete_tree_takes_brackets_in_a_location_literally(seaweed, prefix):
    from test_storage import check_delete_tree_takes_brackets_literally

    check_delete_tree_takes_brackets_literally(
        open_store(f"s3://{BUCKET}/{prefix}/photos [2024]/seq", seaweed.options()),
        open_store(f"s3://{BUCKET}/{prefix}/photos 2/seq", seaweed.options()))
