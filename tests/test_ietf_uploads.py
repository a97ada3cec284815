"""The IETF resumable-upload draft (interop 6, 7, 8, and none) against the real server over
raw sockets: creation with ?0 and ?1, the 104 interim response, offset retrieval, appends,
409, the completion's JSON, OPTIONS limits, cancellation, inconsistent lengths, and field
values that are not the structured fields the draft defines."""

from __future__ import annotations

import hashlib
import os

import pytest

from store.keys import EVENTS_STREAM_KEY

from .checks import sidecar, staged
from .ietf_client import IetfClient, path_from_log
from .raw_http import RawResponse
from .servers import TOKENS, InProcessServer, metric_values, wait_delivered

pytestmark = pytest.mark.in_process

VERSIONS = [6, 7, 8, None]
PROBLEMS = "https://iana.org/assignments/http-problem-types#"


@pytest.fixture(params=VERSIONS, ids=lambda v: f"interop-{v}" if v else "no-version")
def version(request: pytest.FixtureRequest) -> int | None:
    return request.param


@pytest.fixture
def client(server: InProcessServer, version: int | None) -> IetfClient:
    return IetfClient(server, TOKENS["alice"], version)


def lifetime_key(version: int | None) -> str:
    return "expires" if version == 6 else "max-age"


def limits(response: RawResponse) -> dict[str, str]:
    members = (member.strip().split("=") for member in response.headers["upload-limit"].split(","))
    return {key: value for key, value in members}


def problem(response: RawResponse, kind: str) -> dict:
    assert response.headers["content-type"] == "application/problem+json", response
    document = response.json()
    assert document["type"] == (PROBLEMS + kind if kind != "about:blank" else kind), document
    assert document["status"] == response.status
    return document


def assert_interim_104(exchange, version: int | None, *, location: bool) -> None:
    """A 104 before the final answer exactly when the request named a version spoken here."""
    if version is None:
        assert exchange.interim == []
        return
    first = exchange.interim[0]
    assert (first.status, first.reason) == (104, "Upload Resumption Supported")
    assert first.headers["upload-draft-interop-version"] == str(version)
    if location:
        assert first.headers["location"] == exchange.final.headers["location"]
        assert lifetime_key(version) in limits(first)
    assert all(r.status == 104 for r in exchange.interim)


def test_creation_appends_and_completion(
    server: InProcessServer, client: IetfClient, version: int | None
) -> None:
    data = os.urandom(300_000)
    name = f"parts-{version}.bin"
    created = client.create(data[:100_000], complete=False, name=name, Upload_Length=str(len(data)))
    final = created.final
    assert final.status == 201, final
    assert final.headers["upload-complete"] == "?0"
    assert final.headers["upload-offset"] == "100000"
    assert final.headers["upload-length"] == str(len(data))
    assert int(limits(final)[lifetime_key(version)]) > 0
    assert "tus-resumable" not in final.headers
    assert_interim_104(created, version, location=True)
    path = created.location
    assert path.startswith("/files/")

    head = client.head(path)
    assert head.status == 204
    assert head.headers["upload-offset"] == "100000"
    assert head.headers["upload-complete"] == "?0"
    assert head.headers["upload-length"] == str(len(data))
    assert head.headers["cache-control"] == "no-store"
    assert lifetime_key(version) in limits(head)

    middle = client.append(path, 100_000, data[100_000:200_000], complete=False).final
    assert middle.status == (201 if version == 6 else 204)
    assert middle.headers["upload-offset"] == "200000"
    assert middle.headers["upload-complete"] == "?0"

    wrong = client.append(path, 150_000, data[150_000:], complete=True).final
    assert wrong.status == 409
    assert wrong.headers["upload-offset"] == "200000"
    assert wrong.headers["upload-complete"] == "?0"
    details = problem(wrong, "mismatching-upload-offset")
    assert (details["expected-offset"], details["provided-offset"]) == (200_000, 150_000)

    last = client.append(path, 200_000, data[200_000:], complete=True).final
    assert last.status == 200, last
    assert last.headers["upload-complete"] == "?1"
    assert last.headers["upload-offset"] == str(len(data))
    record = last.json()
    md5 = hashlib.md5(data).hexdigest()
    assert (record["name"], record["path"], record["size"]) == (name, f"alice/{name}", len(data))
    assert record["md5"] == md5 and record["isText"] is False
    assert record["uploadId"] == path.rsplit("/", 1)[1]
    assert staged(server, "alice", name).read_bytes() == data
    assert sidecar(server, "alice", name) == record  # the answer is the sidecar, mtime too

    head = client.head(path)
    assert (head.status, head.headers["upload-complete"]) == (204, "?1")
    assert head.headers["upload-offset"] == str(len(data))

    # A client that lost the answer asks again with an empty ?1 append: the same answer.
    again = client.append(path, len(data), complete=True).final
    assert (again.status, again.json()) == (200, record)
    # Nothing changes a completed upload.
    more = client.append(path, len(data), b"more", complete=True).final
    kind = "inconsistent-upload-length" if version in (8, None) else "completed-upload"
    assert more.status == 400 and problem(more, kind)
    assert more.headers["upload-complete"] == "?0"
    incomplete = client.append(path, len(data), complete=False).final
    assert incomplete.status == 400 and problem(incomplete, "completed-upload")
    assert staged(server, "alice", name).read_bytes() == data


def test_creation_with_the_whole_content(
    server: InProcessServer, client: IetfClient, version: int | None
) -> None:
    data = b"line one\nline two\n" * 5000
    name = f"whole-{version}.txt"
    created = client.create(data, complete=True, name=name)
    assert created.final.status == 201, created.final
    assert_interim_104(created, version, location=True)
    final = created.final
    assert final.headers["upload-complete"] == "?1"
    assert final.headers["upload-offset"] == final.headers["upload-length"] == str(len(data))
    record = final.json()
    assert record["md5"] == hashlib.md5(data).hexdigest()
    assert record["lineCount"] == "10000" and record["isText"] is True
    assert record == sidecar(server, "alice", name)
    assert staged(server, "alice", name).read_bytes() == data


def test_an_empty_upload(server: InProcessServer, client: IetfClient, version: int | None) -> None:
    name = f"empty-{version}.txt"
    final = client.create(complete=True, name=name).final
    assert final.status == 201 and final.json()["size"] == 0
    assert staged(server, "alice", name).read_bytes() == b""


def test_the_104_comes_before_the_content_is_sent(
    server: InProcessServer, client: IetfClient, version: int | None
) -> None:
    """The client holds the content back until the 104 has arrived (with no version, the
    first answer is the final one)."""
    data = os.urandom(50_000)
    with client.start_creation(len(data), "waited.bin", complete=True) as connection:
        if version is not None:
            interim = connection.read_response()
            assert interim.status == 104
            assert interim.headers["location"].startswith("/files/")
            assert interim.headers["upload-draft-interop-version"] == str(version)
            assert lifetime_key(version) in interim.headers["upload-limit"]
        connection.send(data)
        final = connection.read_response()
    assert final.status == 201, final
    assert final.json()["md5"] == hashlib.md5(data).hexdigest()


def test_only_upload_complete_completes(server: InProcessServer, client: IetfClient) -> None:
    data = b"x" * 1000
    created = client.create(data, complete=False, name="open.bin", Upload_Length="1000")
    path = created.location
    assert created.final.headers["upload-offset"] == "1000"
    # Every byte is in, but the client did not say the upload is complete.
    head = client.head(path)
    assert (head.headers["upload-offset"], head.headers["upload-complete"]) == ("1000", "?0")
    assert not staged(server, "alice", "open.bin").exists()
    done = client.append(path, 1000, complete=True).final
    assert done.status == 200 and done.json()["size"] == 1000
    assert staged(server, "alice", "open.bin").read_bytes() == data


def test_a_length_learned_on_completion(server: InProcessServer, client: IetfClient) -> None:
    created = client.create(b"abc", complete=False, name="deferred.txt")
    path = created.location
    assert "upload-length" not in created.final.headers
    assert "upload-length" not in client.head(path).headers
    # The completing append's Content-Length gives the length (offset + content).
    done = client.append(path, 3, b"defg", complete=True).final
    assert done.status == 200 and done.headers["upload-length"] == "7"
    assert staged(server, "alice", "deferred.txt").read_bytes() == b"abcdefg"


def test_options_announce_the_limits(make_server, version: int | None) -> None:
    plain = IetfClient(make_server(), None, version).options()
    assert plain.status == 204
    assert plain.headers["accept-patch"] == "application/partial-upload"
    assert limits(plain) == {lifetime_key(version): str(7 * 24 * 3600)}
    assert "tus-resumable" not in plain.headers
    capped = make_server("--max-size", "5000", "--expire-after", "60")
    answer = IetfClient(capped, None, version).options()
    assert limits(answer) == {"max-size": "5000", lifetime_key(version): "60"}


def test_cancellation(server: InProcessServer, client: IetfClient) -> None:
    path = client.create(b"partial", complete=False, name="cancelled.bin").location
    assert client.delete(path).status == 204
    gone = client.head(path)
    assert gone.status == 404
    assert not list((server.data_dir / "uploads").iterdir())
    again = client.delete(path)
    assert again.status == 404 and problem(again, "about:blank")["title"] == "Not Found"


def test_an_interrupted_creation_is_resumed(
    server: InProcessServer, client: IetfClient, version: int | None
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 77)
    sent = 1024 * 1024 + 13
    request_id = f"cut-creation-{version}"
    creation = client.start_creation(
        len(data), "resumed.bin", complete=True, X_Request_ID=request_id
    )
    with creation as connection:
        if version is not None:
            path = connection.read_response().headers["location"]  # the 104
        connection.send(data[:sent])
        wait_delivered(connection.sock)
    # Without a 104 a client cannot know the upload: the test learns it from the log.
    logged_path = path_from_log(server, request_id)  # (and waits for the request's end)
    if version is None:
        path = logged_path
    assert path == logged_path
    head = client.head(path)
    assert head.status == 204
    assert head.headers["upload-offset"] == str(sent)
    assert head.headers["upload-complete"] == "?0"
    assert head.headers["upload-length"] == str(len(data))  # ?1 + Content-Length said so
    done = client.append(path, sent, data[sent:], complete=True).final
    assert done.status == 200, done
    assert done.json()["md5"] == hashlib.md5(data).hexdigest()
    assert staged(server, "alice", "resumed.bin").read_bytes() == data


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"Upload_Complete": "?1", "Upload_Length": "10"}, b"12345"),  # 5 bytes say the end
        ({"Upload_Complete": "?0", "Upload_Length": "3"}, b"12345"),  # past the length
    ],
)
def test_inconsistent_lengths_at_creation(
    server: InProcessServer, client: IetfClient, headers: dict[str, str], body: bytes
) -> None:
    final = client.send(
        "POST", "/files/", body, Content_Disposition="inline; filename=x", **headers
    ).final
    assert final.status == 400
    problem(final, "inconsistent-upload-length")
    assert "location" not in final.headers  # nothing was created
    assert not list((server.data_dir / "uploads").iterdir())


def test_inconsistent_lengths_on_append(server: InProcessServer, client: IetfClient) -> None:
    path = client.create(b"0123", complete=False, name="lengths.bin", Upload_Length="10").location
    cases = [
        ({"Upload_Length": "11"}, b"45", False),  # not the length recorded
        ({}, b"456789AB", False),  # runs past the length
        ({}, b"45", True),  # ?1 says the end, at 6 of 10
    ]
    for headers, body, complete in cases:
        answer = client.append(path, 4, body, complete=complete, **headers).final
        assert answer.status == 400, (headers, body, answer)
        problem(answer, "inconsistent-upload-length")
        assert answer.headers["upload-offset"] == "4"
        assert answer.headers["upload-complete"] == "?0"
    assert client.head(path).headers["upload-offset"] == "4"


def test_a_chunked_body_past_the_length_keeps_what_fits(
    server: InProcessServer, client: IetfClient
) -> None:
    path = client.create(complete=False, name="chunked.bin", Upload_Length="10").location
    chunked = b"8\r\n01234567\r\n8\r\n89ABCDEF\r\n0\r\n\r\n"
    answer = client.send(
        "PATCH",
        path,
        chunked,
        Transfer_Encoding="chunked",
        Upload_Offset="0",
        Upload_Complete="?0",
        Content_Type="application/partial-upload",
    ).final
    assert answer.status == 400
    problem(answer, "inconsistent-upload-length")
    assert answer.headers["upload-offset"] == "10"  # what fits is kept
    done = client.append(path, 10, complete=True).final
    assert done.status == 200
    assert staged(server, "alice", "chunked.bin").read_bytes() == b"0123456789"


@pytest.mark.parametrize(
    ("method", "headers", "reason"),
    [
        ("POST", {"Upload_Complete": "yes"}, "Upload-Complete is required"),
        ("POST", {"Upload_Complete": "?1, ?1"}, "Upload-Complete is required"),
        ("PATCH", {"Upload_Complete": "?1", "Upload_Offset": "1.5"}, "Upload-Offset is required"),
        ("PATCH", {"Upload_Complete": "?3", "Upload_Offset": "0"}, "Upload-Complete is required"),
    ],
)
def test_fields_that_are_not_structured_fields_are_ignored(
    server: InProcessServer,
    client: IetfClient,
    method: str,
    headers: dict[str, str],
    reason: str,
) -> None:
    path = "/files/"
    if method == "PATCH":
        path = client.create(complete=False, name="ignored.bin").location
        headers = {**headers, "Content_Type": "application/partial-upload"}
    disposition = "inline; filename=i"
    answer = client.send(
        method, path, b"", Content_Length="0", Content_Disposition=disposition, **headers
    ).final
    assert answer.status == 400, answer
    assert reason in problem(answer, "about:blank")["detail"]


def test_a_version_or_length_that_is_not_an_integer_is_ignored(
    server: InProcessServer,
) -> None:
    client = IetfClient(server, TOKENS["alice"], None)
    created = client.send(
        "POST",
        "/files/",
        b"abc",
        Upload_Draft_Interop_Version="six",
        Upload_Complete="?0",
        Upload_Length="-5",
        Content_Disposition="inline; filename=odd.bin",
    )
    assert created.interim == []  # no version spoken here: no 104
    assert created.final.status == 201
    assert "upload-length" not in created.final.headers  # the length stays unknown


def test_interop_6_refuses_state_fields_on_head_and_delete(server: InProcessServer) -> None:
    six = IetfClient(server, TOKENS["alice"], 6)
    path = six.create(complete=False, name="six.bin").location
    for field in ("Upload_Offset", "Upload_Complete", "Upload_Length"):
        assert six.head(path, **{field: "0"}).status == 400
        if field != "Upload_Length":
            refused = six.send("DELETE", path, **{field: "0"}).final
            detail = problem(refused, "about:blank")["detail"]
            assert field.replace("_", "-") in detail and "resumable-upload-05" in detail
    assert six.head(path).status == 204  # the upload is still there
    # Later versions do not refuse them.
    seven = IetfClient(server, TOKENS["alice"], 7)
    assert seven.head(path, Upload_Offset="0").status == 204


def test_names_and_folders(server: InProcessServer, client: IetfClient) -> None:
    metadata = "filename bWV0YS50eHQ=,destPath cmVwb3J0cy8yMDI2"  # meta.txt, reports/2026
    by_metadata = client.create(b"m", complete=True, name=None, Upload_Metadata=metadata).final
    assert by_metadata.json()["path"] == "alice/reports/2026/meta.txt"
    preferred = client.create(
        b"d",
        complete=True,
        name=None,
        Upload_Metadata=metadata,
        Content_Disposition="inline; filename=\"plain.txt\"; filename*=UTF-8''%C3%A9t%C3%A9.txt",
    ).final
    assert preferred.json()["path"] == "alice/reports/2026/été.txt"
    for disposition in ('inline; filename="../escape.txt"', "inline; filename*=UTF-8''%FF"):
        refused = client.create(
            b"x", complete=True, name=None, Content_Disposition=disposition
        ).final
        assert refused.status == 400
        assert problem(refused, "about:blank")["detail"]
    nameless = client.create(b"x", complete=True, name=None).final
    assert nameless.status == 400 and "file name is required" in nameless.json()["detail"]
    # A file where the folder should be: a conflict with what is on disk.
    client.create(b"f", complete=True, name="taken")
    in_the_way = "filename eC50eHQ=,destPath dGFrZW4="  # x.txt in taken/
    blocked = client.create(b"x", complete=True, name=None, Upload_Metadata=in_the_way).final
    assert blocked.status == 409
    assert "not a folder" in problem(blocked, "about:blank")["detail"]
    assert blocked.headers["upload-complete"] == "?0"


def test_protocols_continue_each_others_uploads(server: InProcessServer, alice) -> None:
    ietf = IetfClient(server, TOKENS["alice"], 8)
    # Created by the draft, finished by tus: offset = length completes it under tus rules.
    path = ietf.create(
        b"first half ", complete=False, name="mixed-1.txt", Upload_Length="22"
    ).location
    url = server.url + path
    assert alice.offset(url) == 11
    assert alice.patch(url, 11, b"second half").status_code == 204
    assert staged(server, "alice", "mixed-1.txt").read_bytes() == b"first half second half"
    # Created by tus, finished by the draft.
    url = alice.create_url(8, "mixed-2.txt")
    assert alice.patch(url, 0, b"1234").status_code == 204
    path = url.removeprefix(server.url)
    assert ietf.head(path).headers["upload-offset"] == "4"
    done = ietf.append(path, 4, b"5678", complete=True).final
    assert done.status == 200 and done.json()["md5"] == hashlib.md5(b"12345678").hexdigest()
    # The tus answers are as they were: Tus-Resumable on each.
    assert alice.head(url).headers["Tus-Resumable"] == "1.0.0"


def test_refusals_carry_no_tus_header_and_other_users_see_nothing(server: InProcessServer) -> None:
    alice = IetfClient(server, TOKENS["alice"], 7)
    bob = IetfClient(server, TOKENS["bob"], 7)
    path = alice.create(b"secret", complete=False, name="mine.bin").location
    for answer in (
        bob.head(path),
        bob.append(path, 6, b"x", complete=True).final,
        bob.delete(path),
    ):
        assert answer.status == 404
        assert "tus-resumable" not in answer.headers
        assert "upload-offset" not in answer.headers
    assert alice.head(path).headers["upload-offset"] == "6"
    nobody = IetfClient(server, None, 7).head(path)
    assert nobody.status == 401


def test_events_and_metrics_name_the_protocol(
    server: InProcessServer, client: IetfClient, version: int | None, redis_proc
) -> None:
    before = metric_values(server.url)
    client.create(b"evented", complete=True, name=f"evented-{version}.txt")
    with redis_proc.client() as redis:
        entries = [
            {k.decode(): v.decode() for k, v in fields.items()}
            for _, fields in redis.xrange(EVENTS_STREAM_KEY)
        ]
    finished = [e for e in entries if e["event"] == "finished"]
    assert finished[-1]["protocol"] == "ietf"
    label = str(version) if version else "none"
    series = f'tus_staging_ietf_requests_total{{interop="{label}"}}'
    assert metric_values(server.url)[series] == before.get(series, 0) + 1


def test_progress_104s_during_a_long_body(make_server) -> None:
    """Each checkpoint commit is told in a 104 with the offset (never the Location again)."""
    server = make_server("--checkpoint-bytes", str(1024 * 1024))
    client = IetfClient(server, TOKENS["alice"], 8)
    data = os.urandom(5 * 1024 * 1024)
    with client.start_creation(len(data), "progress.bin", complete=True) as connection:
        assert "location" in connection.read_response().headers
        connection.send(data[: 3 * 1024 * 1024])
        progress = connection.read_response()  # while the rest is withheld
        assert progress.status == 104 and "location" not in progress.headers
        assert progress.headers["upload-draft-interop-version"] == "8"
        assert 1024 * 1024 <= int(progress.headers["upload-offset"]) <= 3 * 1024 * 1024
        connection.send(data[3 * 1024 * 1024 :])
        answers = connection.responses()
    offsets = [int(r.headers["upload-offset"]) for r in answers[:-1]]
    assert offsets == sorted(offsets) and all(o <= len(data) for o in offsets)
    assert answers[-1].status == 201
    assert answers[-1].json()["md5"] == hashlib.md5(data).hexdigest()


def test_a_new_request_takes_over_from_one_in_flight(
    server: InProcessServer, client: IetfClient, version: int | None
) -> None:
    """The draft's recommended concurrency: a HEAD while a creation is still receiving asks
    it to stop; the HEAD sees every byte it received, and the displaced request is told."""
    data = os.urandom(2 * 1024 * 1024)
    path = client.create(complete=False, name="taken-over.bin").location
    with client.start_append(path, 0, len(data), complete=True) as stalled:
        stalled.send(data[:700_000])
        wait_delivered(stalled.sock)
        head = client.head(path)  # the client gave up on the stalled request
        assert head.status == 204
        assert head.headers["upload-offset"] == "700000"
        displaced = stalled.responses()[-1]  # (after 104s telling what it had committed)
        assert displaced.status == 423
        assert displaced.headers["upload-offset"] == "700000"
        assert displaced.headers["upload-complete"] == "?0"
    done = client.append(path, 700_000, data[700_000:], complete=True).final
    assert done.status == 200 and done.json()["md5"] == hashlib.md5(data).hexdigest()


def test_cancellation_stops_a_request_in_flight(
    server: InProcessServer, client: IetfClient
) -> None:
    path = client.create(complete=False, name="stopped.bin").location
    with client.start_append(path, 0, 1_000_000, complete=False) as in_flight:
        in_flight.send(b"x" * 100_000)
        wait_delivered(in_flight.sock)
        assert client.delete(path).status == 204
        assert in_flight.responses()[-1].status == 423
    assert client.head(path).status == 404
    assert not list((server.data_dir / "uploads").iterdir())
    assert not staged(server, "alice", "stopped.bin").exists()


def test_no_interim_response_to_an_http_1_0_client(server: InProcessServer) -> None:
    """RFC 9110 15.2: a server never sends a 1xx to an HTTP/1.0 client."""
    client = IetfClient(server, TOKENS["alice"], 8)
    fields = client.headers(
        Upload_Complete="?1", Content_Length="3", Content_Disposition="inline; filename=old.txt"
    )
    head = "POST /files/ HTTP/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields) + "\r\n"
    with client.connect() as connection:
        connection.send(head.encode() + b"abc")
        answer = connection.read_response()
    assert answer.status == 201 and answer.json()["size"] == 3


def test_method_override(server: InProcessServer, client: IetfClient) -> None:
    """For clients behind proxies that only pass GET and POST, as for tus."""
    path = client.create(b"abc", complete=False, name="override.bin").location
    appended = client.send(
        "POST",
        path,
        b"def",
        X_HTTP_Method_Override="PATCH",
        Upload_Offset="3",
        Upload_Complete="?1",
        Content_Type="application/partial-upload",
    ).final
    assert appended.status == 200 and appended.json()["size"] == 6
    offset = client.send("POST", path, X_HTTP_Method_Override="HEAD").final
    assert (offset.status, offset.headers["upload-complete"]) == (204, "?1")
    refused = client.send("POST", path, X_HTTP_Method_Override="PUT").final
    assert refused.status == 400
    assert client.send("POST", path, X_HTTP_Method_Override="DELETE").final.status == 204
    assert client.head(path).status == 404


def test_a_page_of_an_allowed_origin_may_use_the_drafts_fields(make_server) -> None:
    page = "http://app.example.org"
    server = make_server("--cors-origins", page)
    client = IetfClient(server, TOKENS["alice"], 8)
    preflight = client.send(
        "OPTIONS",
        "/files/",
        Origin=page,
        Access_Control_Request_Method="POST",
        Access_Control_Request_Headers="upload-complete, content-disposition",
    ).final
    allowed = preflight.headers["access-control-allow-headers"].lower()
    for name in ("upload-complete", "upload-draft-interop-version", "content-disposition"):
        assert name in allowed
    created = client.create(b"x", complete=True, name="cors.txt", Origin=page).final
    assert created.headers["access-control-allow-origin"] == page
    exposed = created.headers["access-control-expose-headers"]
    for name in ("Upload-Complete", "Upload-Limit", "Upload-Offset", "Location"):
        assert name in exposed
