"""CIFAR-10 files: reading the binary layout, the archive's checks, errors that lose nothing, and
the paper's preprocessing and augmentation."""

import hashlib
import io
import os
import tarfile
import urllib.error

import numpy as np
import pytest

from tinyres.data import DatasetError, Loader, cifar10, cifar10_loaders, pixel_mean


def make_archive(cifar_dir, path):
    with tarfile.open(path, "w:gz") as tar:
        tar.add(os.path.join(cifar_dir, cifar10.FOLDER), arcname=cifar10.FOLDER)
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def test_reads_the_official_binary_layout(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    path = str(tmp_path / "batch.bin")
    cifar10.write_batch(path, images, [7, 0, 9])
    raw = np.fromfile(path, np.uint8).reshape(3, 3073)
    assert raw[0, 0] == 7 and raw[0, 1] == images[0, 0, 0, 0] and raw[0, 1 + 1024] == images[0, 1, 0, 0]  # label, R, G
    read_images, read_labels = cifar10.read_batch(path)
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(read_labels, [7, 0, 9])


def test_load_gives_all_training_and_test_images(cifar_dir):
    train_x, train_y, test_x, test_y = cifar10.load(str(cifar_dir), download=False)
    assert train_x.shape == (120, 3, 32, 32) and train_x.dtype == np.uint8
    assert test_x.shape == (24, 3, 32, 32) and set(train_y) == set(range(10))


def test_truncated_file_is_an_error_that_names_it(cifar_dir):
    path = os.path.join(cifar_dir, cifar10.FOLDER, "data_batch_3.bin")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 100)
    with pytest.raises(DatasetError, match="data_batch_3.bin is truncated or corrupt") as raised:
        cifar10.load(str(cifar_dir), download=False)
    # no archive here to extract it from: deleting the folder would lose the data, not repair it
    assert "Delete" not in str(raised.value) and "Put a good copy of the file there" in str(raised.value)
    open(os.path.join(cifar_dir, cifar10.ARCHIVE), "wb").close()
    with pytest.raises(DatasetError, match="Delete .* to extract the archive beside it again"):
        cifar10.load(str(cifar_dir), download=False)


def test_file_cut_at_a_record_boundary_is_not_silently_shorter(cifar_dir):
    path = os.path.join(cifar_dir, cifar10.FOLDER, "data_batch_2.bin")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - cifar10.RECORD_BYTES)
    with pytest.raises(DatasetError, match="data_batch_2.bin: 23.*truncated"):
        cifar10.load(str(cifar_dir), download=False)


def test_missing_file_and_bad_label_are_errors(cifar_dir):
    folder = os.path.join(cifar_dir, cifar10.FOLDER)
    raw = np.fromfile(os.path.join(folder, "test_batch.bin"), np.uint8)
    raw[0] = 12
    raw.tofile(os.path.join(folder, "test_batch.bin"))
    with pytest.raises(DatasetError, match="test_batch.bin is corrupt: record 0 has label 12"):
        cifar10.load(str(cifar_dir), download=False)
    os.remove(os.path.join(folder, "data_batch_5.bin"))
    with pytest.raises(DatasetError, match="data_batch_5.bin is missing"):
        cifar10.load(str(cifar_dir), download=False)


def test_offline_without_data_says_where_to_put_the_files(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(cifar10.urllib.request, "urlopen", offline)
    with pytest.raises(DatasetError) as error:
        cifar10.load(str(tmp_path / "empty"))
    message = str(error.value)
    assert "downloading it failed" in message and "cifar-10-batches-bin/" in message
    assert "cifar-10-binary.tar.gz" in message and str(tmp_path / "empty") in message and "--data-dir" in message
    assert not os.path.exists(tmp_path / "empty")  # nothing half-written, not even the folder


def test_data_dir_may_be_the_batches_folder_itself_but_not_a_file(cifar_dir, tmp_path):
    inside = os.path.join(cifar_dir, cifar10.FOLDER)
    assert cifar10.locate(inside, download=False) == inside
    assert len(cifar10.load(inside, download=False)[0]) == 120
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(DatasetError, match="a-file is a file, not a folder.*--data-dir"):
        cifar10.load(str(tmp_path / "a-file"))


def test_a_data_dir_that_cannot_be_created_or_written_is_a_clear_error(cifar_dir, tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(DatasetError, match=r"a-file/sub and that folder cannot be created .*--data-dir"):
        cifar10.load(str(tmp_path / "a-file" / "sub"))
    target = tmp_path / "read-only"
    target.mkdir()
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", make_archive(cifar_dir, str(target / cifar10.ARCHIVE)))

    def cannot_write(*args, **kwargs):  # what a read-only folder does (tests may run as root, where chmod does not)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cifar10.tempfile, "mkdtemp", cannot_write)
    with pytest.raises(DatasetError, match=r"cifar-10-binary.tar.gz cannot be extracted where it is .*tar xzf"):
        cifar10.locate(str(target), download=False)


def test_archive_is_checked_then_extracted_atomically(cifar_dir, tmp_path, monkeypatch):
    target = tmp_path / "fresh"
    target.mkdir()
    md5 = make_archive(cifar_dir, str(target / cifar10.ARCHIVE))
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", md5)
    folder = cifar10.locate(str(target), download=False)
    assert sorted(os.listdir(folder)) == sorted(cifar10.TRAIN_FILES + cifar10.TEST_FILES + ["batches.meta.txt"])
    assert sorted(os.listdir(target)) == sorted([cifar10.ARCHIVE, cifar10.FOLDER])  # no staging folder left


def test_archive_with_the_wrong_md5_is_refused(cifar_dir, tmp_path):
    target = tmp_path / "bad"
    target.mkdir()
    make_archive(cifar_dir, str(target / cifar10.ARCHIVE))
    with pytest.raises(DatasetError, match=r"cifar-10-binary.tar.gz has MD5 \w+, expected c32a1d4ab5d03f1284b67883e8d87530"):
        cifar10.locate(str(target))
    assert not os.path.exists(target / cifar10.FOLDER)


def test_download_then_md5_then_extract(cifar_dir, tmp_path, monkeypatch):
    archive = str(tmp_path / "served.tar.gz")
    md5 = make_archive(cifar_dir, archive)
    payload = open(archive, "rb").read()
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", md5)
    monkeypatch.setattr(cifar10.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(payload))
    train_x, _, _, _ = cifar10.load(str(tmp_path / "cache"))
    assert len(train_x) == 120


def test_default_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYRES_DATA", str(tmp_path))
    assert cifar10.default_data_dir() == str(tmp_path)
    monkeypatch.delenv("TINYRES_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cifar10.default_data_dir() == str(tmp_path / "xdg" / "tinyres")


def loader_for(backend, augment, n=10, seed=0):
    images = np.random.default_rng(1).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    return Loader(images, np.arange(n) % 10, 4, backend, pixel_mean(images), augment=augment, shuffle=augment, seed=seed), images


def test_evaluation_batches_are_the_mean_subtracted_images_in_order(backend):
    loader, images = loader_for(backend, augment=False)
    batches = list(loader.epoch())
    assert [len(y) for _, y in batches] == [4, 4, 2]
    x = np.concatenate([b.numpy() for b, _ in batches])
    np.testing.assert_allclose(x, images / 255.0 - pixel_mean(images), atol=1e-6)
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-6)  # per-pixel mean removed


def test_training_crops_are_flipped_or_plain_windows_of_the_padded_image(backend):
    loader, images = loader_for(backend, augment=True)
    normalized = images / 255.0 - pixel_mean(images)
    padded = np.pad(normalized, ((0, 0), (0, 0), (4, 4), (4, 4)))
    order = np.random.default_rng([0, 0]).permutation(10)
    x, y = next(loader.epoch(0))
    assert x.shape == (4, 3, 32, 32) and x.dtype == np.float32 and x.backend is backend
    for crop, index in zip(x.numpy(), order[:4]):
        windows = [padded[index, :, t : t + 32, s : s + 32] for t in range(9) for s in range(9)]
        windows += [w[:, :, ::-1] for w in windows]
        assert any(np.allclose(crop, w, atol=1e-6) for w in windows)


def test_augmentation_is_a_function_of_seed_epoch_and_batch(backend):
    a, _ = loader_for(backend, augment=True, seed=3)
    b, _ = loader_for(backend, augment=True, seed=3)
    first = [x.numpy() for x, _ in a.epoch(2)]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate([x.numpy() for x, _ in b.epoch(2)]))
    # starting mid-epoch (a resumed run) gives the same remaining batches
    np.testing.assert_array_equal(first[1], next(b.epoch(2, start=1))[0].numpy())
    assert not np.array_equal(first[0], next(a.epoch(3))[0].numpy())  # a new epoch, new order


def test_subset_and_validation_split(cifar_dir):
    train, evaluation, mean = cifar10_loaders(str(cifar_dir), batch_size=8, subset=50, validation=20, download=False)
    assert train.num_images == 50 and evaluation["val"].num_images == 20 and evaluation["test"].num_images == 24
    assert len(train) == 6 and mean.shape == (3, 32, 32)  # the last partial batch is dropped in training
    # which images: the validation set is the last 20 training images, the subset the first 50 of
    # the rest, and no validation image is trained on
    images, labels, _, _ = cifar10.load(str(cifar_dir), download=False)
    np.testing.assert_array_equal(evaluation["val"].images, images[-20:])
    np.testing.assert_array_equal(evaluation["val"].labels, labels[-20:])
    np.testing.assert_array_equal(train.images, images[:50])
    trained = {image.tobytes() for image in train.images}
    assert not any(image.tobytes() in trained for image in evaluation["val"].images)
    np.testing.assert_allclose(mean, images[:50].astype(np.float64).mean(axis=0) / 255, rtol=1e-6)  # the trained images' mean
    with pytest.raises(ValueError, match="subset must be between 1 and 100"):
        cifar10_loaders(str(cifar_dir), subset=500, validation=20, download=False)


def test_a_data_folder_that_is_a_dangling_link_is_a_clear_error(tmp_path):
    loop = tmp_path / "data"
    loop.symlink_to(loop)  # a link to itself: exists() is False, yet the name is taken
    with pytest.raises(DatasetError, match="is a link to nothing.*--data-dir"):
        cifar10.load(str(loop))
    (tmp_path / "gone").symlink_to(tmp_path / "missing")
    with pytest.raises(DatasetError, match="is a link to nothing"):
        cifar10.load(str(tmp_path / "gone"))
