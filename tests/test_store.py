import hashlib
import threading

import pytest

from catalog.store import ImageStore


def test_put_names_file_by_content_hash(tmp_path):
    store = ImageStore(tmp_path)
    data = b"fish" * 100
    rel = store.put(data)
    digest = hashlib.sha256(data).hexdigest()
    assert rel == f"{digest[:2]}/{digest[2:4]}/{digest}.jpg"
    assert store.read(rel) == data


def test_put_refuses_wrong_hash(tmp_path):
    with pytest.raises(ValueError, match="mismatch"):
        ImageStore(tmp_path).put(b"abc", sha256="0" * 64)
    assert not list(tmp_path.rglob("*.part"))


def test_concurrent_writers_leave_one_whole_file(tmp_path):
    store = ImageStore(tmp_path)
    data = bytes(range(256)) * 4096  # 1 MiB
    errors: list[BaseException] = []

    def write() -> None:
        try:
            store.put(data)
        except BaseException as exc:  # pragma: no cover - the assertion reports it
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].read_bytes() == data


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    store = ImageStore(tmp_path)

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr("catalog.store.os.replace", boom)
    with pytest.raises(OSError):
        store.put(b"x" * 1000)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
