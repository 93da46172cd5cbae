"""The KV engine answers as Vault's vault-plugin-secrets-kv does, driven through `Backend.handle` alone.

It proves, for v2: versions and `?version=`, check-and-set and cas_required, trimming past max_versions,
soft delete / undelete / destroy and the 404 body of a deleted version, delete_version_after, merge patch,
metadata (custom_metadata, patch, delete) and LIST of folders, config, subkeys, and that concurrent writers
with the same `cas` cannot both win; for v1: read/write/delete/list with lease durations. Bad input must raise
the typed error and leave the storage view byte-for-byte unchanged. Each request runs on `asyncio.run` over a
`MemoryView`, stamped with a time the test chooses, since engines read no clock of their own.
"""

import asyncio

import pytest

from vaultd.engines.kv import kv_v1_backend, kv_v2_backend
from vaultd.engines.kv.records import format_duration, format_time
from vaultd.sdk.errors import (
    CheckAndSetMismatch,
    InvalidRequest,
    NotFound,
    UnsupportedOperation,
    UnsupportedPath,
    VaultError,
)
from vaultd.sdk.request import Operation, Request, Response
from vaultd.sdk.storage import MemoryView

READ, UPDATE, PATCH, DELETE, LIST = Operation.READ, Operation.UPDATE, Operation.PATCH, Operation.DELETE, Operation.LIST
T0 = 1_521_685_446.5  # 2018-03-22T02:24:06.5Z, exact in a float
T0_TEXT = "2018-03-22T02:24:06.5Z"


class LoggingView(MemoryView):
    """A MemoryView that logs every write and yields to the loop on every call, as a replicated view would."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, str]] = []

    async def get(self, key):
        await asyncio.sleep(0)
        return await super().get(key)

    async def put(self, key, value):
        await asyncio.sleep(0)
        self.writes.append(("put", key))
        await super().put(key, value)

    async def delete(self, key):
        await asyncio.sleep(0)
        self.writes.append(("delete", key))
        await super().delete(key)

    async def transaction(self, ops):
        await asyncio.sleep(0)
        self.writes.append(tuple((op, key) for op, key, _ in ops))  # one atomic write
        await super().transaction(ops)


class Mount:
    """One mounted backend over its own view; `now` is the received_at of the next request."""

    def __init__(self, backend):
        self.backend = backend
        self.view = LoggingView()
        self.now = T0

    def request(self, operation, path, data=None) -> Request:
        return Request(operation=operation, path=path, data=dict(data or {}), storage=self.view, received_at=self.now)

    def __call__(self, operation, path, data=None) -> Response | None:
        return asyncio.run(self.backend.handle(self.request(operation, path, data)))

    def fails(self, error, operation, path, data=None) -> VaultError:
        with pytest.raises(error) as caught:
            self(operation, path, data)
        return caught.value

    def write(self, path, data, **options):
        body = {"data": data, "options": options} if options else {"data": data}
        return self(UPDATE, f"data/{path}", body).data


@pytest.fixture
def kv():
    return Mount(kv_v2_backend())


@pytest.fixture
def kv1():
    return Mount(kv_v1_backend())


def block(version, created=T0_TEXT, deletion="", destroyed=False, custom=None):
    return {
        "created_time": created,
        "custom_metadata": custom,
        "deletion_time": deletion,
        "destroyed": destroyed,
        "version": version,
    }


# ---- wire formats


@pytest.mark.parametrize(
    ("nanoseconds", "text"),
    [
        (None, ""),
        (0, "1970-01-01T00:00:00Z"),
        (1_521_685_446_945_319_214, "2018-03-22T02:24:06.945319214Z"),
        (1_521_685_446_500_000_000, "2018-03-22T02:24:06.5Z"),
        (1_521_685_446_000_001_000, "2018-03-22T02:24:06.000001Z"),
    ],
)
def test_times_print_as_go_rfc3339nano(nanoseconds, text):
    assert format_time(nanoseconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (45, "45s"), (300, "5m0s"), (3600, "1h0m0s"), (12319, "3h25m19s"), (-1, "-1s")]
)
def test_durations_print_as_go_duration_strings(seconds, text):
    assert format_duration(seconds) == text


# ---- data: versions and reads


def test_write_answers_the_metadata_block_and_read_answers_data_plus_metadata(kv):
    assert kv.write("app/db", {"password": "hunter2", "nested": {"n": 1}}) == block(1)
    response = kv(READ, "data/app/db")
    assert response.data == {"data": {"password": "hunter2", "nested": {"n": 1}}, "metadata": block(1)}
    assert response.lease_duration == 0


def test_each_write_is_a_new_version_and_version_reads_an_older_one(kv):
    for number in range(1, 4):
        kv.now = T0 + number
        assert kv.write("s", {"n": number})["version"] == number
    assert kv(READ, "data/s").data["data"] == {"n": 3}
    older = kv(READ, "data/s", {"version": "1"}).data  # query parameters arrive as strings
    assert older == {"data": {"n": 1}, "metadata": block(1, created="2018-03-22T02:24:07.5Z")}
    assert kv(READ, "data/s", {"version": 0}).data["data"] == {"n": 3}


def test_a_missing_secret_or_version_is_a_bare_not_found(kv):
    assert kv.fails(NotFound, READ, "data/nothing").data is None
    kv.write("s", {"a": 1})
    assert kv.fails(NotFound, READ, "data/s", {"version": 7}).data is None


def test_a_write_puts_version_and_metadata_in_one_transaction(kv):
    kv.write("s", {"a": 1})
    assert kv.view.writes == [(("put", "versions/s/1"), ("put", "metadata/s"))]
    assert set(kv.view.values) == {"versions/s/1", "metadata/s"}


# ---- check-and-set


def test_cas_zero_writes_only_a_new_secret_and_cas_n_only_over_version_n(kv):
    assert kv.write("s", {"a": 1}, cas=0)["version"] == 1
    before = dict(kv.view.values)
    error = kv.fails(CheckAndSetMismatch, UPDATE, "data/s", {"data": {"a": 2}, "options": {"cas": 0}})
    assert error.messages == ["check-and-set parameter did not match the current version"]
    kv.fails(CheckAndSetMismatch, UPDATE, "data/s", {"data": {"a": 2}, "options": {"cas": 2}})
    assert kv.view.values == before
    assert kv.write("s", {"a": 2}, cas=1)["version"] == 2


@pytest.mark.parametrize("where", ["config", "metadata"])
def test_cas_required_refuses_a_write_without_cas(kv, where):
    kv(UPDATE, "config" if where == "config" else "metadata/s", {"cas_required": True})
    before = dict(kv.view.values)
    error = kv.fails(InvalidRequest, UPDATE, "data/s", {"data": {"a": 1}})
    assert error.messages == ["check-and-set parameter required for this call"]
    assert kv.view.values == before
    assert kv.write("s", {"a": 1}, cas=0)["version"] == 1


def test_concurrent_writers_with_the_same_cas_cannot_both_win(kv):
    async def race():
        requests = [kv.request(UPDATE, "data/s", {"data": {"writer": n}, "options": {"cas": 0}}) for n in range(2)]
        return await asyncio.gather(*(kv.backend.handle(r) for r in requests), return_exceptions=True)

    outcomes = asyncio.run(race())
    assert sorted(type(outcome).__name__ for outcome in outcomes) == ["CheckAndSetMismatch", "Response"]
    assert kv(READ, "metadata/s").data["current_version"] == 1


# ---- max_versions


def test_versions_past_max_versions_are_removed_oldest_first(kv):
    kv(UPDATE, "config", {"max_versions": 3})
    for number in range(1, 5):
        kv.write("s", {"n": number})
    del kv.view.writes[:]
    kv.write("s", {"n": 5})
    assert kv.view.writes == [(("put", "versions/s/5"), ("put", "metadata/s"), ("delete", "versions/s/2"))]
    meta = kv(READ, "metadata/s").data
    assert (meta["current_version"], meta["oldest_version"]) == (5, 3)
    assert sorted(meta["versions"]) == ["3", "4", "5"]
    assert sorted(key for key in kv.view.values if key.startswith("versions/")) == [
        "versions/s/3", "versions/s/4", "versions/s/5",
    ]
    assert kv.fails(NotFound, READ, "data/s", {"version": 2}).data is None
    assert kv(READ, "data/s", {"version": 3}).data["data"] == {"n": 3}


def test_the_larger_of_the_secrets_and_the_mounts_max_versions_applies(kv):
    kv(UPDATE, "config", {"max_versions": 2})
    kv(UPDATE, "metadata/s", {"max_versions": 4})
    for number in range(1, 7):
        kv.write("s", {"n": number})
    assert sorted(kv(READ, "metadata/s").data["versions"], key=int) == ["3", "4", "5", "6"]


def test_a_fresh_secret_reports_oldest_version_zero_as_vault_does(kv):
    kv.write("s", {"a": 1})
    assert kv(READ, "metadata/s").data["oldest_version"] == 0


# ---- delete, undelete, destroy


def test_soft_deleting_the_latest_version_gives_the_vault_404_body(kv):
    kv.write("s", {"a": 1})
    kv.write("s", {"a": 2})
    kv.now = T0 + 10
    assert kv(DELETE, "data/s") is None
    error = kv.fails(NotFound, READ, "data/s")
    assert error.messages == []
    assert error.data == {"data": None, "metadata": block(2, deletion="2018-03-22T02:24:16.5Z")}
    assert kv(READ, "data/s", {"version": 1}).data["data"] == {"a": 1}
    assert kv.view.values["versions/s/2"]  # a soft delete keeps the data


def test_deleting_versions_hides_them_until_undeleted(kv):
    for number in range(1, 4):
        kv.write("s", {"n": number})
    assert kv(UPDATE, "delete/s", {"versions": [1, 2]}) is None
    kv.fails(NotFound, READ, "data/s", {"version": 1})
    kv.fails(NotFound, READ, "data/s", {"version": 2})
    assert kv(UPDATE, "undelete/s", {"versions": "1"}) is None  # a comma-separated string, as the CLI sends
    assert kv(READ, "data/s", {"version": 1}).data["metadata"]["deletion_time"] == ""
    kv.fails(NotFound, READ, "data/s", {"version": 2})
    assert kv(READ, "data/s").data["data"] == {"n": 3}


def test_destroying_a_version_removes_its_data_for_good(kv):
    kv.write("s", {"a": 1})
    kv.write("s", {"a": 2})
    assert kv(UPDATE, "destroy/s", {"versions": [1]}) is None
    assert "versions/s/1" not in kv.view.values
    destroyed = kv.fails(NotFound, READ, "data/s", {"version": 1})
    assert destroyed.data == {"data": None, "metadata": block(1, destroyed=True)}
    kv(UPDATE, "undelete/s", {"versions": [1]})
    assert kv.fails(NotFound, READ, "data/s", {"version": 1}).data["metadata"]["destroyed"] is True
    assert kv(READ, "metadata/s").data["versions"]["1"]["destroyed"] is True


def test_delete_undelete_destroy_of_a_missing_secret_change_nothing(kv):
    for verb in ("delete", "undelete", "destroy"):
        assert kv(UPDATE, f"{verb}/nothing", {"versions": [1]}) is None
    assert kv(DELETE, "data/nothing") is None
    assert kv.view.values == {}


def test_delete_version_after_schedules_each_versions_deletion(kv):
    kv(UPDATE, "config", {"delete_version_after": "1h"})
    kv(UPDATE, "metadata/s", {"delete_version_after": "30m"})  # the smaller non-zero one applies
    written = kv.write("s", {"a": 1})
    assert written["deletion_time"] == "2018-03-22T02:54:06.5Z"
    kv.now = T0 + 1799
    assert kv(READ, "data/s").data["data"] == {"a": 1}
    kv.now = T0 + 1800
    assert kv.fails(NotFound, READ, "data/s").data["metadata"]["deletion_time"] == "2018-03-22T02:54:06.5Z"
    kv.now = T0 + 3600
    kv(UPDATE, "undelete/s", {"versions": [1]})  # the clock for deletion starts again
    assert kv(READ, "data/s").data["metadata"]["deletion_time"] == "2018-03-22T03:54:06.5Z"


def test_a_negative_config_delete_version_after_disables_it_everywhere(kv):
    kv(UPDATE, "metadata/s", {"delete_version_after": "30m"})
    kv(UPDATE, "config", {"delete_version_after": "-5s"})
    assert kv(READ, "config").data["delete_version_after"] == "-1s"
    assert kv.write("s", {"a": 1})["deletion_time"] == ""


# ---- patch


def test_patch_merges_into_the_current_version_as_a_new_version(kv):
    kv.write("s", {"keep": 1, "nested": {"drop": 2, "stay": 3}, "gone": 4})
    response = kv(PATCH, "data/s", {"data": {"nested": {"drop": None, "new": 5}, "gone": None, "added": [1]}})
    assert response.data == block(2)
    assert kv(READ, "data/s").data["data"] == {"keep": 1, "nested": {"stay": 3, "new": 5}, "added": [1]}
    assert kv(READ, "data/s", {"version": 1}).data["data"]["gone"] == 4


def test_patch_needs_a_live_current_version_and_honours_cas(kv):
    assert kv.fails(NotFound, PATCH, "data/s", {"data": {"a": 1}}).data is None
    kv.write("s", {"a": 1})
    kv.fails(CheckAndSetMismatch, PATCH, "data/s", {"data": {"a": 2}, "options": {"cas": 5}})
    kv(DELETE, "data/s")
    assert kv.fails(NotFound, PATCH, "data/s", {"data": {"a": 2}}).data == block(1, deletion=T0_TEXT)
    assert kv(READ, "metadata/s").data["current_version"] == 1


# ---- metadata


def test_metadata_read_is_vaults_body(kv):
    kv(UPDATE, "metadata/s", {"max_versions": 5, "delete_version_after": "3h25m19s", "custom_metadata": {"o": "x"}})
    kv.now = T0 + 1
    kv.write("s", {"a": 1})
    kv(DELETE, "data/s")
    assert kv(READ, "metadata/s").data == {
        "cas_required": False,
        "created_time": T0_TEXT,
        "current_version": 1,
        "custom_metadata": {"o": "x"},
        "delete_version_after": "3h25m19s",
        "max_versions": 5,
        "oldest_version": 0,
        "updated_time": "2018-03-22T02:24:07.5Z",  # moved by the new version, never by a metadata write
        "versions": {
            "1": {"created_time": "2018-03-22T02:24:07.5Z", "deletion_time": "2018-03-22T02:24:07.5Z",
                  "destroyed": False},
        },
    }
    assert kv.fails(NotFound, READ, "data/s", {"version": 1}).data["metadata"]["custom_metadata"] == {"o": "x"}


def test_metadata_written_before_any_version_has_none_to_read(kv):
    kv(UPDATE, "metadata/s", {"cas_required": True})
    assert kv(READ, "metadata/s").data["current_version"] == 0
    assert kv.fails(NotFound, READ, "data/s").data is None
    assert kv(UPDATE, "metadata/t", {}) is None and "metadata/t" not in kv.view.values


def test_metadata_patch_merges_custom_metadata_and_keeps_other_settings(kv):
    kv(UPDATE, "metadata/s", {"max_versions": 4, "custom_metadata": {"owner": "ops", "tier": "1"}})
    kv(PATCH, "metadata/s", {"custom_metadata": {"tier": None, "team": 7}, "cas_required": True})
    meta = kv(READ, "metadata/s").data
    assert meta["custom_metadata"] == {"owner": "ops", "team": "7"}
    assert (meta["max_versions"], meta["cas_required"]) == (4, True)
    kv.fails(NotFound, PATCH, "metadata/missing", {"max_versions": 1})
    assert "metadata/missing" not in kv.view.values


def test_a_metadata_write_replaces_custom_metadata_whole(kv):
    kv(UPDATE, "metadata/s", {"custom_metadata": {"a": "1", "b": "2"}})
    kv(UPDATE, "metadata/s", {"custom_metadata": {"c": "3"}})
    assert kv(READ, "metadata/s").data["custom_metadata"] == {"c": "3"}


def test_cas_required_false_under_a_cas_required_mount_is_a_warning(kv):
    kv(UPDATE, "config", {"cas_required": True})
    response = kv(UPDATE, "metadata/s", {"cas_required": False})
    assert response.warnings == [
        '"cas_required" set to false, but is mandated by backend config. This value will be ignored.'
    ]


def test_deleting_metadata_removes_every_version_and_the_metadata(kv):
    kv(UPDATE, "config", {"max_versions": 2})
    for number in range(3):
        kv.write("s", {"n": number})
    kv.write("other", {"x": 1})
    kv(UPDATE, "destroy/s", {"versions": [2]})
    assert kv(DELETE, "metadata/s") is None
    assert sorted(kv.view.values) == ["config", "metadata/other", "versions/other/1"]
    assert kv.fails(NotFound, READ, "metadata/s").data is None


def test_list_shows_secrets_and_folders_one_level_down(kv):
    for path in ("a", "b/c", "b/d/e", "b"):
        kv.write(path, {"x": 1})
    assert kv(LIST, "metadata/").data == {"keys": ["a", "b", "b/"]}
    assert kv(LIST, "metadata/b/").data == {"keys": ["c", "d/"]}
    assert kv(LIST, "metadata/b").data == {"keys": ["c", "d/"]}
    kv.fails(NotFound, LIST, "metadata/nothing/")
    kv(DELETE, "metadata/b/d/e")
    assert kv(LIST, "metadata/b/").data == {"keys": ["c"]}


def test_list_of_an_empty_mount_is_not_found(kv):
    assert kv.fails(NotFound, LIST, "metadata/").data is None


# ---- config, subkeys, routing


def test_config_reads_back_what_was_written(kv):
    assert kv(READ, "config").data == {"cas_required": False, "delete_version_after": "0s", "max_versions": 0}
    assert kv(UPDATE, "config", {"max_versions": 7, "cas_required": "true", "delete_version_after": 90}) is None
    assert kv(READ, "config").data == {"cas_required": True, "delete_version_after": "1m30s", "max_versions": 7}
    kv(UPDATE, "config", {"delete_version_after": "0s"})
    assert kv(READ, "config").data["delete_version_after"] == "0s"


def test_subkeys_replace_every_value_with_null(kv):
    kv.write("s", {"a": 1, "b": {"c": "x", "d": {"e": True}, "empty": {}}, "list": [1, 2]})
    response = kv(READ, "subkeys/s")
    assert response.data == {
        "metadata": block(1),
        "subkeys": {"a": None, "b": {"c": None, "d": {"e": None}, "empty": None}, "list": None},
    }
    assert kv(READ, "subkeys/s", {"depth": "1"}).data["subkeys"] == {"a": None, "b": None, "list": None}
    kv(DELETE, "data/s")
    assert kv.fails(NotFound, READ, "subkeys/s").data["subkeys"] is None


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("data/", "Invalid path for a versioned K/V secrets engine"),
        ("data/s/", "Invalid path for a versioned K/V secrets engine"),
        ("s", "use 'vault kv get'"),
        ("data", "Non-listing operations on the root of a K/V v2 mount are not supported."),
    ],
)
def test_paths_outside_the_v2_layout_are_unsupported(kv, path, message):
    kv.write("s", {"a": 1})
    error = kv.fails(UnsupportedPath, READ, path)
    assert message in error.messages[0]


def test_the_first_write_is_a_create_for_the_acl_and_later_ones_updates(kv):
    first = kv.request(UPDATE, "data/s", {"data": {"a": 1}})
    assert asyncio.run(kv.backend.existence(first)) is False
    asyncio.run(kv.backend.handle(first))
    assert first.operation is Operation.CREATE
    assert asyncio.run(kv.backend.existence(kv.request(UPDATE, "data/s", {"data": {}}))) is True


# ---- bad input changes nothing


@pytest.mark.parametrize(
    ("operation", "path", "body", "error", "message"),
    [
        (UPDATE, "data/s", {}, InvalidRequest, "no data provided"),
        (UPDATE, "data/s", {"data": ["not", "a", "map"]}, InvalidRequest, "for field 'data'"),
        (UPDATE, "data/s", {"data": {"a": 1}, "options": "cas"}, InvalidRequest, "for field 'options'"),
        (UPDATE, "data/s", {"data": {"a": 1}, "options": {"cas": "one"}}, InvalidRequest,
         "error parsing check-and-set parameter"),
        (UPDATE, "data/s", {"data": {"a": 1}, "options": {"cas": 7}}, CheckAndSetMismatch, "did not match"),
        (PATCH, "data/s", {}, InvalidRequest, "no data provided"),
        (READ, "data/s", {"version": "latest"}, InvalidRequest, "for field 'version'"),
        (UPDATE, "metadata/s", {"max_versions": "many"}, InvalidRequest, "for field 'max_versions'"),
        (UPDATE, "metadata/s", {"max_versions": -1}, InvalidRequest, "cannot provide negative value"),
        (UPDATE, "metadata/s", {"cas_required": "maybe"}, InvalidRequest, "for field 'cas_required'"),
        (UPDATE, "metadata/s", {"delete_version_after": "soon"}, InvalidRequest, "delete_version_after"),
        (UPDATE, "metadata/s", {"custom_metadata": "k=v"}, InvalidRequest, "for field 'custom_metadata'"),
        (UPDATE, "metadata/s", {"custom_metadata": {"k": {"nested": 1}}}, InvalidRequest,
         "custom_metadata validation failed"),
        (UPDATE, "metadata/s", {"custom_metadata": {"k" * 129: "v", "e": ""}}, InvalidRequest,
         "2 errors occurred:\n\t* custom_metadata validation failed: length of key"),
        (UPDATE, "metadata/s", {"custom_metadata": {str(n): "v" for n in range(65)}}, InvalidRequest,
         "payload must contain at most 64 keys, provided 65"),
        (PATCH, "metadata/s", {"custom_metadata": {"bell": "\a"}}, InvalidRequest, "unprintable characters"),
        (UPDATE, "metadata/", {"max_versions": 1}, InvalidRequest, "missing path"),
        (UPDATE, "metadata/dir/", {"max_versions": 1}, InvalidRequest, "cannot end in '/'"),
        (UPDATE, "delete/s", {}, InvalidRequest, "No version number provided"),
        (UPDATE, "undelete/s", {"versions": []}, InvalidRequest, "No version number provided"),
        (UPDATE, "destroy/s", {"versions": ""}, InvalidRequest, "no version number provided"),
        (UPDATE, "destroy/s", {"versions": ["one"]}, InvalidRequest, "for field 'versions'"),
        (UPDATE, "config", {"max_versions": True}, InvalidRequest, "for field 'max_versions'"),
        (UPDATE, "config", {"delete_version_after": "-x"}, InvalidRequest, "delete_version_after"),
        (READ, "subkeys/s", {"depth": -1}, InvalidRequest, "depth"),
        (Operation.LIST, "data/s", {}, UnsupportedOperation, "unsupported operation"),
    ],
)
def test_bad_input_raises_and_leaves_storage_unchanged(kv, operation, path, body, error, message):
    kv.write("s", {"a": 1})
    kv(UPDATE, "metadata/s", {"custom_metadata": {"owner": "ops"}})
    before = dict(kv.view.values)
    raised = kv.fails(error, operation, path, body)
    assert message in raised.messages[0]
    assert kv.view.values == before


# ---- KV v1


def test_v1_stores_the_whole_body_and_reads_it_with_a_lease(kv1):
    assert kv1(UPDATE, "app/db", {"password": "hunter2", "n": 1}) is None
    response = kv1(READ, "app/db")
    assert response.data == {"password": "hunter2", "n": 1}
    assert (response.lease_duration, response.lease_id, response.renewable) == (2_764_800, "", False)
    kv1(UPDATE, "app/db", {"only": "this"})
    assert kv1(READ, "app/db").data == {"only": "this"}


@pytest.mark.parametrize(("ttl", "seconds"), [("1h", 3600), (90, 90), ("nonsense", 2_764_800)])
def test_v1_lease_duration_follows_the_secrets_ttl(kv1, ttl, seconds):
    kv1(UPDATE, "s", {"ttl": ttl, "v": 1})
    assert kv1(READ, "s").lease_duration == seconds


def test_v1_lists_folders_and_deletes(kv1):
    for path in ("a", "b/c", "b/d/e"):
        kv1(UPDATE, path, {"x": 1})
    assert kv1(LIST, "").data == {"keys": ["a", "b/"]}
    assert kv1(LIST, "b/").data == {"keys": ["c", "d/"]}
    assert kv1(DELETE, "b/c") is None
    kv1.fails(NotFound, READ, "b/c")
    assert kv1(LIST, "b").data == {"keys": ["d/"]}
    kv1.fails(NotFound, LIST, "nothing/")


def test_v1_first_write_is_a_create(kv1):
    first = kv1.request(UPDATE, "s", {"x": 1})
    asyncio.run(kv1.backend.handle(first))
    assert first.operation is Operation.CREATE
    assert asyncio.run(kv1.backend.existence(kv1.request(UPDATE, "s"))) is True


@pytest.mark.parametrize(
    ("operation", "path", "body", "error", "message"),
    [
        (UPDATE, "s", {}, InvalidRequest, "missing data fields"),
        (UPDATE, "", {"x": 1}, InvalidRequest, "missing path"),
        (UPDATE, "dir/", {"x": 1}, InvalidRequest, "cannot end in '/'"),
        (PATCH, "s", {"x": 1}, UnsupportedOperation, "unsupported operation"),
    ],
)
def test_v1_bad_input_raises_and_leaves_storage_unchanged(kv1, operation, path, body, error, message):
    kv1(UPDATE, "s", {"x": 0})
    before = dict(kv1.view.values)
    raised = kv1.fails(error, operation, path, body)
    assert message in raised.messages[0]
    assert kv1.view.values == before
