"""Request forgery as a browser really sends it: a page on another origin (another port of
this host) posts a form, fires a ``no-cors`` fetch and tries a DELETE at a single-user
server; none of it changes anything. A page of the server's own origin needs no extra
header. Debian's headless Chromium, driven by playwright-core."""

from __future__ import annotations

import json
from pathlib import Path

from .js_env import require_chromium
from .servers import ServerProcess
from .test_js_clients import run_node, static_http_server

ATTACK_PAGE = """<!doctype html>
<form id="form" method="POST" action="{server}/mkdir/by-form" target="sink">
  <input name="a" value="b">
</form>
<iframe name="sink"></iframe>
<script>
window.attack = async () => {{
  const sent = {{}}
  const noCors = await fetch(
    '{server}/mkdir/by-no-cors-fetch', {{ method: 'POST', mode: 'no-cors' }}
  )
  sent.noCors = noCors.type  // "opaque": sent, the answer hidden from the page
  try {{
    sent.delete = (await fetch('{server}/delete/victim.txt', {{ method: 'DELETE' }})).status
  }} catch (error) {{
    sent.delete = String(error)  // the preflight found no CORS allowance
  }}
  await new Promise((done) => {{
    document.querySelector('iframe').onload = done
    document.getElementById('form').submit()
  }})
  sent.form = 'submitted'
  return sent
}}
</script>
"""


def test_a_page_of_another_origin_changes_nothing_and_a_page_of_the_server_works(
    node_modules: Path,
    tmp_path: Path,
    make_server,
) -> None:
    require_chromium()
    server: ServerProcess = make_server(single_user=True)
    home = server.data_dir / "staging" / "local"
    home.mkdir(parents=True)
    (home / "victim.txt").write_text("v")
    site = tmp_path / "attacker"
    site.mkdir()
    (site / "attack.html").write_text(ATTACK_PAGE.format(server=server.url))
    log_start = server.log_path.stat().st_size
    with static_http_server(site) as attacker:
        done = run_node("csrf_browser.mjs", f"{attacker}/attack.html", server.url)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{server.log()}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["pageErrors"] == [], report
    assert report["attack"]["noCors"] == "opaque" and report["attack"]["form"] == "submitted"
    assert report["attack"]["delete"] != 200
    assert report["sameOrigin"] == 201
    assert sorted(p.name for p in home.iterdir()) == ["same-origin", "victim.txt"]
    log = server.log_path.read_bytes()[log_start:].decode()
    # The browser did send the two simple POSTs; the server refused them.
    for path in ("/mkdir/by-form", "/mkdir/by-no-cors-fetch"):
        assert f"method=POST path={path} status=403" in log, log
    assert "method=DELETE" not in log  # never sent: its preflight got no allowance
