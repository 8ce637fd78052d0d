"""The web chat page in a real browser: Debian's chromium through chromium-driver, driven by
selenium, with the official Socket.IO v4 client the page loads from the server. Two users in
two browser sessions go through a whole conversation, with a server restart in the middle
that the pages must come back from by themselves with nothing lost and nothing doubled; and
the same with Socket.IO's connection state recovery (`--recovery`). Screenshots go to
tools/tests/screenshots/ (git-ignored; docs/web-page.md shows one)."""

import hashlib
import shutil
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlparse

import pytest
import requests

from chatserver import Client, Server
from conftest import run

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs Debian's chromium and chromium-driver (tools/ensure-deps.sh --python)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Page:
    """One user's browser session on the chat page."""

    def __init__(self, url: str, width: int = 1100, height: int = 760, phone: bool = False):
        options = webdriver.ChromeOptions()
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         f"--window-size={width},{height}", "--no-first-run", "--no-default-browser-check"):
            options.add_argument(argument)
        if phone:  # a phone's viewport (a headless window is never narrower than 500 pixels)
            options.add_experimental_option("mobileEmulation", {"deviceMetrics": {"width": width, "height": height, "pixelRatio": 2}})
        options.binary_location = CHROMIUM
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(20)
        self.driver.get(url)

    def find(self, selector):
        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def wait(self, condition, timeout: float = 15, message: str = ""):
        return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(lambda _: condition(), message)

    def sign_in(self, username: str):
        self.wait(lambda: self.find("#username").is_displayed(), message="the sign-in form")
        self.find("#username").send_keys(username)
        self.find("#sign-in button").click()
        self.wait(lambda: self.find("#status").text == "online", message=f"{username} online")

    def click(self, selector: str, message: str = ""):
        """Clicks `selector`, again if the page re-rendered it in between (a members list
        refreshed by a presence notice)."""
        def clicked():
            try:
                self.find(selector).click()
                return True
            except (StaleElementReferenceException, NoSuchElementException):
                return False
        self.wait(clicked, message=message or f"click {selector}")

    def texts(self):
        """The message texts of the open room, in the page's order (read in one step: the page
        replaces items as messages are sent)."""
        return self.driver.execute_script(
            "return [...document.querySelectorAll('#messages li.message')].map((li) => li.querySelector('.text').textContent)")

    def ids(self):
        """The ids of the open room's messages (the ones the server has), in the page's order."""
        return self.driver.execute_script(
            "return [...document.querySelectorAll('#messages li.message[data-id]')].map((li) => Number(li.dataset.id))")

    def outgoing(self):
        """The open room's messages still in the outbox: [pending or refused, text, what the page says]."""
        return [tuple(row) for row in self.driver.execute_script(
            "return [...document.querySelectorAll('#messages li.outgoing')].map((li) => "
            "[li.classList.contains('refused') ? 'refused' : 'pending', li.querySelector('.text').textContent,"
            " li.querySelector('.meta').textContent])")]

    def stored_outbox(self):
        """The outbox as the page keeps it in localStorage (what survives a reload)."""
        return self.driver.execute_script(
            "return Object.keys(localStorage).filter((k) => k.startsWith('chatlog.outbox.'))"
            ".flatMap((k) => JSON.parse(localStorage.getItem(k)))")

    def presence_notices(self):
        return [item.text for item in self.driver.find_elements(By.CSS_SELECTOR, "#messages li.notice")
                if item.text.endswith(" is online") or item.text.endswith(" is offline")]

    def join(self, group: str):
        self.find("#join-id").send_keys(group)
        self.find("#join-room button").click()
        self.wait(lambda: self.find("#room-title").text == group,
                  message=f"in {group}; the page says: {self.find('#notice').text!r}")

    def send(self, text: str):
        self.find("#text").send_keys(text)
        self.find("#composer button").click()

    def open_room(self, group: str):
        self.wait(lambda: self.driver.find_elements(By.CSS_SELECTOR, f'#my-rooms button[data-group="{group}"]'),
                  message=f"{group} in the room list")
        self.click(f'#my-rooms button[data-group="{group}"]')
        self.wait(lambda: self.find("#room-title").text == group)

    def body(self, name: str) -> str:
        return self.find("body").get_attribute(f"data-{name}") or ""

    def screenshot(self, name: str):
        SCREENSHOTS.mkdir(exist_ok=True)
        self.driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))

    def errors(self):
        """Severe console messages, but for the expected ones while the server is away."""
        try:
            logs = self.driver.get_log("browser")
        except WebDriverException:
            return []
        return [entry["message"] for entry in logs if entry["level"] == "SEVERE"
                and "ERR_CONNECTION_REFUSED" not in entry["message"] and "socket.io/?EIO=4" not in entry["message"]]

    def close(self):
        self.driver.quit()


def post(server, user, group, text, client_id=None):
    body = {"message": text}
    if client_id:
        body["client_id"] = client_id
    response = requests.post(f"{server.url}/api/rooms/{group}/messages", json=body,
                             headers={"X-Chatlog-User": user}, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def alice_and_bob_in(server, pages, group):
    """Two users' pages, both signed in and in `group` (created by the first join)."""
    alice, bob = pages(server.url), pages(server.url)
    for page, name in ((alice, "alice"), (bob, "bob")):
        page.sign_in(name)
        page.join(group)
    return alice, bob


@pytest.fixture()
def pages():
    opened = []
    yield lambda *args, **kwargs: opened.append(Page(*args, **kwargs)) or opened[-1]
    for page in opened:
        page.close()


def test_two_users_through_a_whole_conversation_and_a_restart(chatlog, journal, pages):
    port = free_port()
    server = Server(chatlog, journal).start(port=port)
    try:
        alice = pages(server.url)
        alice.sign_in("alice")

        # A private room, with a long history to scroll back through.
        alice.find("#new-room").send_keys("secret")
        alice.find("#new-room-private").click()
        alice.find("#create-room button").click()
        alice.wait(lambda: alice.find("#room-title").text == "secret", message="the new room opens")
        assert alice.find("#room-kind").text == "private"
        for index in range(70):
            post(server, "alice", "secret", f"old {index:02d}", client_id=f"old-{index}")
        alice.wait(lambda: len(alice.texts()) == 70, message="alice sees the 70 messages live")

        # Bob cannot get in uninvited.
        bob = pages(server.url)
        bob.sign_in("bob")
        bob.find("#join-id").send_keys("secret")
        bob.find("#join-room button").click()
        bob.wait(lambda: "must invite bob" in bob.find("#notice").text, message="bob is refused")
        assert not bob.driver.find_elements(By.CSS_SELECTOR, '#my-rooms button[data-group="secret"]')

        # Alice invites him from the members panel; he joins and sees the newest page.
        alice.find("#members-toggle").click()
        alice.wait(lambda: alice.find("#owner-tools").is_displayed(), message="the owner's tools")
        alice.find("#invitee").send_keys("bob")
        alice.find("#invite-form button").click()
        alice.wait(lambda: "bob" in alice.find("#invited-list").text, message="bob invited")
        alice.find("#members-toggle").click()
        bob.find("#join-id").send_keys("secret")
        bob.find("#join-room button").click()
        bob.wait(lambda: bob.find("#room-title").text == "secret", message="bob in the room")
        bob.wait(lambda: len(bob.texts()) == 50, message="the newest page")
        assert bob.texts()[-1] == "old 69" and bob.texts()[0] == "old 20"
        alice.wait(lambda: any("bob joined" in n.text for n in alice.driver.find_elements(By.CSS_SELECTOR, "#messages li.notice")),
                   message="alice sees bob join")

        # Scroll-back: scrolling to the top loads the older messages, in order.
        bob.driver.execute_script("document.getElementById('messages').scrollTop = 0")
        bob.wait(lambda: len(bob.texts()) == 70, message="scroll-back loads the rest")
        assert bob.texts() == [f"old {index:02d}" for index in range(70)]
        bob.wait(lambda: "the start of secret" in bob.find("#messages").text)

        # Typing, and messages both ways.
        bob.find("#text").send_keys("typing…")
        alice.wait(lambda: "bob is typing" in alice.find("#typing").text, message="alice sees bob typing")
        bob.find("#text").clear()
        bob.send("hi alice <script>alert(1)</script>")
        alice.wait(lambda: alice.texts()[-1:] == ["hi alice <script>alert(1)</script>"], message="bob's message at alice")
        alice.send("hi bob & welcome")
        bob.wait(lambda: bob.texts()[-1:] == ["hi bob & welcome"], message="alice's message at bob")
        alice.screenshot("conversation-alice")
        bob.screenshot("conversation-bob")

        # Alice edits and deletes her own messages; bob sees both.
        mine = alice.driver.find_elements(By.CSS_SELECTOR, "#messages li.message")[-1]
        alice.driver.execute_script("arguments[0].querySelector('button.edit').click()", mine)
        edit = alice.wait(lambda: mine.find_elements(By.CSS_SELECTOR, ".edit-form input"), message="the edit form")[0]
        edit.clear()
        edit.send_keys("hi bob & welcome (edited text)")
        mine.find_element(By.CSS_SELECTOR, ".edit-form button").click()
        bob.wait(lambda: bob.texts()[-1] == "hi bob & welcome (edited text)", message="the edit at bob")
        first = alice.driver.find_elements(By.CSS_SELECTOR, "#messages li.message")[0]
        alice.driver.execute_script("arguments[0].querySelector('button.delete').click()", first)
        bob.wait(lambda: bob.texts()[0] == "message deleted", message="the deletion at bob")

        # The server restarts. Bob sends while it is down (the client buffers the send); alice's
        # bot posts before bob's page is back. Both pages resume by themselves: nothing lost,
        # nothing twice, in order.
        before = bob.texts()
        connects = int(bob.body("connects"))
        assert server.stop() == 0
        bob.wait(lambda: bob.find("#status").text != "online", message="bob sees the server go")
        bob.send("sent while the server was down")
        server = Server(chatlog, journal).start(port=port)
        missed = [post(server, "alice", "secret", f"missed {index}") for index in range(3)]
        bob.wait(lambda: int(bob.body("connects")) > connects, timeout=30, message="bob's page reconnects")
        expected_tail = ["sent while the server was down", "missed 0", "missed 1", "missed 2"]
        bob.wait(lambda: sorted(bob.texts()[len(before):]) == sorted(expected_tail), timeout=20,
                 message=f"bob resumes without a gap: {bob.texts()[len(before):]}")
        alice.wait(lambda: sorted(alice.texts()[-4:]) == sorted(expected_tail), timeout=30,
                   message=f"alice resumes without a gap: {alice.texts()[-6:]}")
        for page in (alice, bob):
            ids = page.ids()
            assert ids == sorted(ids) and len(ids) == len(set(ids)), "in id order, once each"
            assert page.texts().count("sent while the server was down") == 1
        assert set(missed) <= set(bob.ids())
        assert bob.body("recovered") == "false"  # without --recovery: the page re-joined from its last id
        bob.screenshot("after-restart-bob")

        # The owner removes bob: his page drops the room.
        alice.find("#members-toggle").click()
        alice.wait(lambda: len(alice.driver.find_elements(By.CSS_SELECTOR, "#member-list button")) == 1)
        alice.click("#member-list button")
        bob.wait(lambda: not bob.driver.find_elements(By.CSS_SELECTOR, '#my-rooms button[data-group="secret"]'),
                 message="bob's page drops the room")
        assert "removed you" in bob.find("#notice").text

        assert alice.errors() == [] and bob.errors() == []
    finally:
        server.stop()


def test_a_message_sent_during_a_restart_in_a_room_without_messages_reaches_both_pages(chatlog, journal, pages):
    # The page keeps the join ack's last_id, so that even a room it has seen no message in is
    # joined again with `after`: what was journaled while it was away is replayed to it.
    port = free_port()
    server = Server(chatlog, journal).start(port=port)
    try:
        alice, bob = alice_and_bob_in(server, pages, "fresh")
        connects = {name: int(page.body("connects")) for page, name in ((alice, "alice"), (bob, "bob"))}
        assert server.stop() == 0
        alice.wait(lambda: alice.find("#status").text != "online", message="alice sees the server go")
        alice.send("the first message, sent while the server was down")
        server = Server(chatlog, journal).start(port=port)
        for page, name in ((alice, "alice"), (bob, "bob")):
            page.wait(lambda: int(page.body("connects")) > connects[name], timeout=30, message=f"{name}'s page reconnects")
            page.wait(lambda: page.texts() == ["the first message, sent while the server was down"], timeout=20,
                      message=f"{name} sees the message without a reload: {page.texts()}")
        assert alice.errors() == [] and bob.errors() == []
    finally:
        server.stop()


def history(server, group):
    response = requests.get(f"{server.url}/api/rooms/{group}/messages", headers={"X-Chatlog-User": "carol"}, timeout=10)
    assert response.status_code == 200, response.text
    return [message["message"] for message in response.json()["messages"]]


def test_a_send_during_a_30_second_outage_waits_in_the_outbox_and_goes_out_once(chatlog, journal, pages):
    # The message is shown as sending the moment it is typed, outlives the client's 15 s ack
    # timeout (which used to drop it with "no answer from the server"), and goes out once the
    # server is back: once, shown as sent. Nobody's page announces the others again.
    port = free_port()
    server = Server(chatlog, journal).start(port=port)
    try:
        alice, bob = alice_and_bob_in(server, pages, "ops")
        alice.send("before the outage")
        bob.wait(lambda: bob.texts() == ["before the outage"])
        alice.wait(lambda: alice.outgoing() == [] and alice.texts() == ["before the outage"], message="shown as sent")
        time.sleep(6)  # past the presence notices' settling time
        notices = {"alice": alice.presence_notices(), "bob": bob.presence_notices()}
        connects = {"alice": int(alice.body("connects")), "bob": int(bob.body("connects"))}

        assert server.stop() == 0
        alice.wait(lambda: alice.find("#status").text != "online", message="alice sees the server go")
        alice.send("typed during the outage")
        alice.wait(lambda: alice.outgoing() == [("pending", "typed during the outage", "sending…")], message="shown as sending")
        assert alice.find("#text").get_attribute("value") == ""
        time.sleep(30)
        assert alice.outgoing() == [("pending", "typed during the outage", "sending…")], "still waiting, text kept"
        assert [entry["message"] for entry in alice.stored_outbox()] == ["typed during the outage"]
        assert not alice.find("#notice").is_displayed() or "no answer" not in alice.find("#notice").text

        server = Server(chatlog, journal).start(port=port)
        for page, name in ((alice, "alice"), (bob, "bob")):
            page.wait(lambda: int(page.body("connects")) > connects[name], timeout=30, message=f"{name}'s page reconnects")
        alice.wait(lambda: alice.outgoing() == [] and alice.texts() == ["before the outage", "typed during the outage"],
                   timeout=20, message=f"shown as sent: {alice.texts()} {alice.outgoing()}")
        bob.wait(lambda: bob.texts() == ["before the outage", "typed during the outage"], timeout=20,
                 message=f"bob gets it once: {bob.texts()}")
        assert history(server, "ops") == ["before the outage", "typed during the outage"]
        assert alice.stored_outbox() == []
        assert len(set(alice.ids())) == 2 and alice.ids() == bob.ids()

        time.sleep(6)  # a presence notice would have settled by now
        assert alice.presence_notices() == notices["alice"] and bob.presence_notices() == notices["bob"], \
            "a restart announces nobody again"
        assert alice.errors() == [] and bob.errors() == []
    finally:
        server.stop()


def test_a_send_pending_when_the_page_is_closed_goes_out_when_it_is_opened_again(chatlog, journal, pages):
    port = free_port()
    server = Server(chatlog, journal).start(port=port)
    try:
        alice, bob = alice_and_bob_in(server, pages, "ops")
        assert server.stop() == 0
        alice.wait(lambda: alice.find("#status").text != "online", message="alice sees the server go")
        alice.send("first, typed offline")
        alice.send("second, typed offline")
        alice.wait(lambda: [text for _, text, _ in alice.outgoing()] == ["first, typed offline", "second, typed offline"])
        alice.driver.get("about:blank")  # the page is gone before the server is back

        server = Server(chatlog, journal).start(port=port)
        alice.driver.get(server.url)  # the same tab: signed in again from its session
        alice.wait(lambda: alice.find("#room-title").text == "ops", timeout=20, message="the page opens the room again")
        alice.wait(lambda: alice.outgoing() == [] and alice.texts() == ["first, typed offline", "second, typed offline"],
                   timeout=20, message=f"sent, in the order typed: {alice.texts()} {alice.outgoing()}")
        bob.wait(lambda: bob.texts() == ["first, typed offline", "second, typed offline"], timeout=30,
                 message=f"bob gets them once: {bob.texts()}")
        assert history(server, "ops") == ["first, typed offline", "second, typed offline"]
        assert alice.stored_outbox() == []
        assert alice.errors() == [] and bob.errors() == []
    finally:
        server.stop()


def test_a_refused_send_says_why_and_keeps_the_text(chatlog, journal, pages):
    server = Server(chatlog, journal).start()
    try:
        alice = pages(server.url)
        alice.sign_in("alice")
        alice.join("ops")
        too_long = "€" * 1400  # 1,400 characters (the field allows 4,096) but 4,200 bytes: over the limit
        alice.driver.execute_script("document.getElementById('text').value = arguments[0]", too_long)
        alice.find("#composer button").click()
        alice.wait(lambda: alice.outgoing() == [("refused", too_long, "not sent: a message is 1 to 4096 bytes of text")],
                   message=f"refused, with the reason: {alice.outgoing()}")
        alice.send("a short one")  # a refusal does not hold up what comes after it
        alice.wait(lambda: alice.texts() == ["a short one", too_long], message=f"the short one is sent: {alice.texts()}")
        assert history(server, "ops") == ["a short one"]

        # The refused one is kept across a reload, until the user discards it.
        alice.driver.refresh()
        alice.wait(lambda: alice.find("#room-title").text == "ops", timeout=20)
        alice.wait(lambda: alice.outgoing() == [("refused", too_long, "not sent: a message is 1 to 4096 bytes of text")],
                   message="still shown after a reload")
        assert [entry["message"] for entry in alice.stored_outbox()] == [too_long]
        alice.driver.execute_script("document.querySelector('#messages li.refused button.discard').click()")
        alice.wait(lambda: alice.outgoing() == [] and alice.stored_outbox() == [], message="discarded")
        assert alice.texts() == ["a short one"]
        assert alice.errors() == []
    finally:
        server.stop()


class LoginService:
    """An operator's sign-in service, as the page expects one: GET /login?return_to=PAGE signs
    the user in (here: always alice) and sends the browser back to PAGE#token=JWT, a token it
    mints with the server's secret (`chatlog token issue`)."""

    def __init__(self, chatlog: str, journal: Path):
        self.returns: list[str] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                query = parse_qs(urlparse(self.path).query)
                service.returns += query.get("return_to", [])
                token = run(chatlog, "token", "issue", "alice", "--journal", str(journal)).stdout.strip()
                self.send_response(302)
                self.send_header("Location", query["return_to"][0] + "#token=" + token)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def test_signing_in_with_tokens_through_the_operators_login_service_or_by_pasting_one(chatlog, journal, pages):
    login = LoginService(chatlog, journal)
    server = Server(chatlog, journal, "--web-login-url", login.url + "/login", dev=False).start()
    try:
        alice = pages(server.url)
        alice.wait(lambda: alice.find("#login-link").is_displayed(), message="the sign-in button")
        assert alice.find("#login-link").get_attribute("href") == f"{login.url}/login?return_to={quote(server.url + '/', safe='')}"
        alice.find("#login-link").click()
        alice.wait(lambda: alice.find("#status").text == "online", message="signed in by the service's token")
        assert alice.find("#me").text == "alice"
        assert login.returns == [server.url + "/"]
        assert alice.driver.current_url == server.url + "/", "the token is taken out of the address bar"

        # Pasting a token (chatlog token issue) still works beside it.
        bob = pages(server.url)
        bob.wait(lambda: bob.find("#token").is_displayed())
        bob.find("#token").send_keys(run(chatlog, "token", "issue", "bob", "--journal", str(journal)).stdout.strip())
        bob.find("#sign-in button").click()
        bob.wait(lambda: bob.find("#status").text == "online", message="signed in by a pasted token")
        assert bob.find("#me").text == "bob"

        # A token the server does not accept brings the sign-in back, saying why.
        mallory = pages(server.url + "/#token=not.a.token")
        mallory.wait(lambda: "Sign-in refused" in mallory.find("#notice").text, message="the refusal")
        assert mallory.find("#sign-in").is_displayed() and mallory.find("#login-link").is_displayed()
        assert alice.errors() == [] and bob.errors() == []
    finally:
        server.stop()
        login.close()


def test_joins_and_typing_are_shown_in_their_own_room(chatlog, journal, pages):
    """The page places notices by the companions that name the room (member-joined, typing):
    with two rooms, what happens in one does not show in the other."""
    server = Server(chatlog, journal).start()
    try:
        alice = pages(server.url)
        alice.sign_in("alice")
        alice.join("two")
        alice.join("one")  # open
        bob = Client(server.url, "bob", transports=["websocket"])
        assert bob.call("join-group", {"group": "two"})["ok"]
        for _ in range(5):
            bob.emit("user-typing", {"group": "two"})
            time.sleep(0.3)
        assert alice.find("#typing").text == "", "bob types in two, not in the open room"
        assert "bob joined" not in alice.find("#messages").text
        alice.open_room("two")
        alice.wait(lambda: "bob joined" in alice.find("#messages").text, message="the join shown in its room")
        bob.emit("user-typing", {"group": "two"})
        alice.wait(lambda: "bob is typing" in alice.find("#typing").text, message="typing in the open room")
        bob.close()
        assert alice.errors() == []
    finally:
        server.stop()


def test_the_page_at_phone_width(chatlog, journal, pages):
    server = Server(chatlog, journal).start()
    try:
        post_room = requests.post(f"{server.url}/api/rooms", json={"group": "lobby"}, headers={"X-Chatlog-User": "carol"}, timeout=10)
        assert post_room.status_code == 201
        phone = pages(server.url, width=390, height=800, phone=True)
        phone.sign_in("dave")
        # The rooms list is a drawer over the page, open until a room is; the ☰ button toggles it.
        phone.wait(lambda: phone.driver.find_elements(By.CSS_SELECTOR, '#public-rooms button[data-group="lobby"]'))
        phone.click('#public-rooms button[data-group="lobby"]')
        phone.wait(lambda: phone.find("#room-title").text == "lobby")
        assert not phone.find("#sidebar").is_displayed(), "the drawer closes once a room opens"
        phone.find("#rooms-toggle").click()
        phone.wait(lambda: phone.find("#sidebar").is_displayed(), message="the ☰ button opens the drawer")
        phone.find("#rooms-toggle").click()
        phone.wait(lambda: not phone.find("#sidebar").is_displayed())
        phone.send("from a phone")
        phone.wait(lambda: phone.texts() == ["from a phone"])
        composer = phone.find("#composer").rect
        viewport = phone.driver.execute_script("return document.documentElement.clientWidth")
        assert viewport <= 390
        assert composer["x"] >= 0 and composer["x"] + composer["width"] <= viewport, f"the composer fits the width: {composer} in {viewport}"
        phone.screenshot("phone")
        assert phone.errors() == []
    finally:
        server.stop()


def test_connection_state_recovery_with_the_official_client(chatlog, journal, pages):
    """With `--recovery`, the official client reconnects with its pid and offset, and the
    server gives its rooms and missed events back, across a restart: `socket.recovered`."""
    port = free_port()
    server = Server(chatlog, journal, "--recovery").start(port=port)
    try:
        requests.post(f"{server.url}/api/rooms", json={"group": "general"}, headers={"X-Chatlog-User": "alice"}, timeout=10)
        erin = pages(server.url)
        erin.sign_in("erin")
        erin.wait(lambda: erin.driver.find_elements(By.CSS_SELECTOR, '#public-rooms button[data-group="general"]'))
        erin.click('#public-rooms button[data-group="general"]')
        erin.wait(lambda: erin.find("#room-title").text == "general")
        post(server, "alice", "general", "before the restart")
        erin.wait(lambda: erin.texts() == ["before the restart"])
        assert erin.body("recovered") == "false"
        connects = int(erin.body("connects"))

        assert server.stop() == 0
        erin.wait(lambda: erin.find("#status").text != "online")
        server = Server(chatlog, journal, "--recovery").start(port=port)
        for index in range(3):
            post(server, "alice", "general", f"missed {index}")
        erin.wait(lambda: int(erin.body("connects")) > connects, timeout=30, message="the page reconnects")
        assert erin.body("recovered") == "true", "the official client's recovery took"
        erin.wait(lambda: erin.texts() == ["before the restart", "missed 0", "missed 1", "missed 2"], timeout=10,
                  message=f"the missed events, once each: {erin.texts()}")
        post(server, "alice", "general", "live again")
        erin.wait(lambda: erin.texts()[-1] == "live again")
        assert erin.texts().count("missed 0") == 1
        assert erin.errors() == []
    finally:
        server.stop()


def test_the_official_client_is_served_where_the_reference_server_serves_it(chatlog, journal, pages):
    """Both URLs serve the pinned bundle; without it, the page says how to install it."""
    vendored = Path(__file__).resolve().parents[2] / "Sources" / "ChatServer" / "Web" / "vendor" / "socket.io.min.js"
    server = Server(chatlog, journal).start()
    try:
        for path in ("/socket.io/socket.io.js", "/socket.io/socket.io.min.js"):
            response = requests.get(server.url + path, timeout=5)
            assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/javascript")
            assert response.content == vendored.read_bytes()
            assert response.text.startswith("/*!\n * Socket.IO v4.8.1")
        assert hashlib.sha256(vendored.read_bytes()).hexdigest() in (Path(__file__).resolve().parents[1] / "ensure-deps.sh").read_text()
        page = requests.get(server.url + "/", timeout=5)
        assert page.status_code == 200 and "default-src 'self'" in page.headers["Content-Security-Policy"]

        # A browser that cannot load the client (as on a server built without it) is told what to do.
        blocked = pages(server.url + "/web/config.json")
        blocked.driver.execute_cdp_cmd("Network.enable", {})
        blocked.driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*socket.io.min.js"]})
        blocked.driver.get(server.url + "/")
        blocked.wait(lambda: blocked.find("#client-missing").is_displayed(), message="the install hint")
        assert "tools/ensure-deps.sh" in blocked.find("#client-missing").text
        assert not blocked.find("#sign-in").is_displayed()
    finally:
        server.stop()


def test_unread_badges_replies_reactions_mentions_direct_messages_and_search(chatlog, journal, pages):
    server = Server(chatlog, journal).start()
    try:
        alice, bob = alice_and_bob_in(server, pages, "ops")
        bob.join("lobby")  # ops is not bob's open room

        def badge(page, group, list_id="my-rooms"):
            return page.driver.execute_script(
                "const b = document.querySelector(`#" + list_id + " button[data-group='${arguments[0]}'] .badge`);"
                "return b ? [b.textContent, b.classList.contains('mention')] : null", group)

        def js_click(page, selector, *args):
            page.wait(lambda: page.driver.execute_script(
                "const e = document.querySelector(arguments[0]); if (!e) return false; e.click(); return true", selector),
                message=f"click {selector}")

        # Unread counts, and a mention, in a room that is not open.
        alice.send("hello @bob")
        alice.send("second")
        bob.wait(lambda: badge(bob, "ops") == ["@1", True], message=f"bob's badge for ops: {badge(bob, 'ops')}")
        assert bob.driver.execute_script(
            "return document.querySelector(`#my-rooms button[data-group='ops'] .badge`).title") == "2 unread, 1 mentioning you"
        bob.open_room("ops")
        bob.wait(lambda: badge(bob, "ops") is None, message="opening the room reads it")
        rooms = requests.get(f"{server.url}/api/me/rooms", headers={"X-Chatlog-User": "bob"}, timeout=10).json()["rooms"]
        bob.wait(lambda: {r["group"]: r for r in requests.get(f"{server.url}/api/me/rooms", headers={"X-Chatlog-User": "bob"},
                                                              timeout=10).json()["rooms"]}["ops"]["unread"] == 0,
                 message=f"the server has bob's marker: {rooms}")
        assert bob.driver.find_elements(By.CSS_SELECTOR, "#messages li.mine-mentioned"), "the mention is highlighted"

        # A reply, quoted on the other page.
        first = bob.ids()[0]
        js_click(bob, f"#messages li[data-id='{first}'] .actions .reply")
        bob.wait(lambda: bob.find("#replying-to").text == "Replying to alice: hello @bob")
        bob.send("hi back")
        alice.wait(lambda: "hi back" in alice.texts(), message="alice gets the reply")
        reply_id = alice.ids()[-1]
        quote_text = alice.driver.execute_script(
            "return document.querySelector(`#messages li[data-id='${arguments[0]}'] .quote`).textContent", reply_id)
        assert quote_text == "↪ alice: hello @bob"

        # A reaction, counted on both pages; a click on one's own takes it back.
        js_click(alice, f"#messages li[data-id='{reply_id}'] .actions .react")
        js_click(alice, f"#messages li[data-id='{reply_id}'] .palette button[data-emoji='👍']")
        reaction = f"#messages li[data-id='{reply_id}'] .reactions button"

        def reactions(page):
            return page.driver.execute_script(
                "return [...document.querySelectorAll(arguments[0])].map((b) => [b.textContent, b.classList.contains('mine')])",
                reaction)
        bob.wait(lambda: reactions(bob) == [["👍 1", False]], message=f"bob sees it: {reactions(bob)}")
        alice.wait(lambda: reactions(alice) == [["👍 1", True]])
        js_click(bob, reaction)  # bob adds his
        alice.wait(lambda: reactions(alice) == [["👍 2", True]], message=f"{reactions(alice)}")
        js_click(alice, reaction)  # alice takes hers back
        bob.wait(lambda: reactions(bob) == [["👍 1", True]], message=f"{reactions(bob)}")

        # A direct room, opened by alice, appears on bob's page by itself.
        alice.find("#direct-with").send_keys("bob")
        alice.find("#open-direct button").click()
        alice.wait(lambda: alice.find("#room-title").text == "bob", message="alice is in the direct room")
        bob.wait(lambda: bob.driver.find_elements(By.CSS_SELECTOR, "#direct-rooms button[data-group='dm:alice:bob']"),
                 message="bob's page lists the direct room")
        alice.send("psst, the password is swordfish")
        bob.wait(lambda: badge(bob, "dm:alice:bob", "direct-rooms") == ["1", False],
                 message=f"{badge(bob, 'dm:alice:bob', 'direct-rooms')}")
        bob.click("#direct-rooms button[data-group='dm:alice:bob']")
        bob.wait(lambda: bob.find("#room-title").text == "alice" and bob.texts() == ["psst, the password is swordfish"])

        # Search, and a result opens its room at the message.
        bob.open_room("ops")
        bob.find("#search-query").send_keys("swordfish")
        bob.find("#search button").click()
        bob.wait(lambda: [b.text for b in bob.driver.find_elements(By.CSS_SELECTOR, "#search-list button")]
                 == ["@ alice alice: psst, the password is swordfish"],
                 message=f"the result: {[b.text for b in bob.driver.find_elements(By.CSS_SELECTOR, '#search-list button')]}")
        bob.click("#search-list button")
        bob.wait(lambda: bob.find("#room-title").text == "alice" and bob.driver.find_elements(By.CSS_SELECTOR, "#messages li.found"))
        bob.screenshot("features")
        assert alice.errors() == [] and bob.errors() == []
    finally:
        server.stop()
