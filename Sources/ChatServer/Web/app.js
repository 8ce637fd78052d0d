// chatlog's web chat page: the official Socket.IO v4 client and the tutorial's events, no
// framework, no build step. Every piece of user text reaches the page through textContent
// (never innerHTML), so it is always text. docs/web-page.md describes what it does.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const HISTORY_PAGE = 50;
  const TYPING_SHOWN_MS = 3000;
  const TYPING_SENT_EVERY_MS = 1000;
  const OUTBOX_LIMIT = 200;          // typed messages waiting to be sent, at most
  const RETRY_FIRST_MS = 1000;       // a send the server could not take now is tried again after this,
  const RETRY_MAX_MS = 30000;        // doubling up to this
  const PRESENCE_SETTLE_MS = 5000;   // an online/offline change is announced once it has held this long
  const MARK_READ_EVERY_MS = 1000;   // at most one read marker a second per room
  const PALETTE = ["👍", "❤️", "😂", "🎉", "👀"];  // the reactions offered (any other arrives as it is)
  // Refusals that say "not now" rather than "no": the send stays in the outbox and is tried again.
  const TRANSIENT = new Set(["timeout", "disconnected", "unavailable", "rate_limited", "not_leader"]);

  /** One room the user is in, as the page knows it. */
  class Room {
    constructor(info) {
      this.group = info.group;
      this.name = info.name || info.group;
      this.private = !!info.private;
      this.owner = info.owner || null;
      this.lastId = null;        // the newest message id seen: where a resume starts
      this.messages = new Map(); // id -> <li>, in id order in the list
      this.loaded = false;       // the first page of history was read
      this.atStart = false;      // no older messages
      this.loadingOlder = false;
      this.members = [];
      this.online = new Set();
      this.announced = null;     // username -> online, as the room's notices last said (null: not joined yet)
      this.invited = [];
      this.direct = !!info.direct;  // a direct room: `name` is the other user
      this.unreadCount = info.unread || 0; // messages after the read marker, from others
      this.mentions = info.mentions || 0;  // of those, the ones that mention the user
      this.lastRead = info.last_read ?? null; // the read marker
      this.markTimer = null;
      this.reactions = new Map(); // message id -> Map(emoji -> [usernames])
      this.list = document.createElement("ol"); // its messages, swapped into #messages
      this.list.className = "messages";
    }
  }

  const state = {
    config: { auth: "dev", recovery: false },
    auth: null,    // {username} or {token}
    user: null,
    socket: null,
    rooms: new Map(),
    current: null,
    typers: new Map(), // username -> timer
    lastTypingSent: 0,
    outbox: null,  // the messages typed and not yet acknowledged (an Outbox)
    flushing: false,
    wake: null,    // ends the outbox's wait before a retry (a new connection, a new message)
    replyTo: null, // {group, id} of the message the next send answers
  };

  /**
   * The messages the user typed that the server has not acknowledged yet, oldest first, kept
   * in localStorage (per user) so that neither a lost connection nor a reload loses one. Each
   * has its `client_id` from the moment it was typed, so sending it again (after a timeout, a
   * reconnection, a reload, or from a second tab) never makes a second message. Every change
   * reads and writes the stored list, so two tabs of one user do not overwrite each other.
   * An entry is `{client_id, group, message, created, refused?}`: `refused` is the server's
   * reason when it said no (the text stays, to be sent again or discarded).
   */
  class Outbox {
    constructor(user) {
      this.key = "chatlog.outbox." + user;
    }

    entries() {
      try {
        const stored = JSON.parse(localStorage.getItem(this.key) || "[]");
        return Array.isArray(stored) ? stored : [];
      } catch {
        return [];
      }
    }

    write(entries) {
      try {
        if (entries.length) localStorage.setItem(this.key, JSON.stringify(entries));
        else localStorage.removeItem(this.key);
      } catch {
        // storage full or refused: the entries are still sent from this page, not kept across a reload
      }
    }

    add(entry) {
      this.write([...this.entries(), entry]);
    }

    update(clientID, change) {
      this.write(this.entries().map((entry) => (entry.client_id === clientID ? { ...entry, ...change } : entry)));
    }

    remove(clientID) {
      this.write(this.entries().filter((entry) => entry.client_id !== clientID));
    }

    /** The oldest entry still to be sent (refused ones wait for the user). */
    next() {
      return this.entries().find((entry) => !entry.refused);
    }
  }

  // ---------- small helpers ----------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  let noticeTimer = null;

  /** Shows a line above the page (an error, a removal) for a while; "" hides it. */
  function notice(text) {
    const banner = $("notice");
    banner.textContent = text;
    banner.hidden = !text;
    clearTimeout(noticeTimer);
    if (text) noticeTimer = setTimeout(() => { banner.hidden = true; }, 10000);
  }

  function randomID() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  /** The username a token speaks for (its `sub`), for showing it and spotting one's own messages. */
  function tokenSubject(token) {
    try {
      const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(decodeURIComponent(escape(atob(payload)))).sub || null;
    } catch {
      return null;
    }
  }

  function apiHeaders() {
    return state.auth.token ? { Authorization: "Bearer " + state.auth.token } : { "X-Chatlog-User": state.auth.username };
  }

  /** An error with the server's code (or `timeout` / `disconnected` when no answer came). */
  function failure(code, message) {
    const error = new Error(message);
    error.code = code;
    return error;
  }

  /** Emits an event and resolves with its ack (rejects with the server's error). */
  function call(event, payload) {
    return new Promise((resolve, reject) => {
      state.socket.timeout(15000).emit(event, payload, (err, ack) => {
        if (err) reject(state.socket.connected ? failure("timeout", event + ": no answer from the server")
                                               : failure("disconnected", event + ": the connection was lost"));
        else if (ack && ack.ok) resolve(ack);
        else reject(failure(ack && ack.error && ack.error.code, (ack && ack.error && ack.error.message) || event + " failed"));
      });
    });
  }

  function formatTime(created) {
    const date = new Date(created);
    return isNaN(date) ? "" : date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // ---------- signing in ----------

  async function start() {
    if (typeof io === "undefined") {
      $("client-missing").hidden = false;
      $("sign-in").hidden = true;
      return;
    }
    try {
      state.config = await (await fetch("/web/config.json")).json();
    } catch {
      notice("The server did not answer; reload the page to try again.");
    }
    const tokens = state.config.auth === "token";
    $("username-field").hidden = tokens;
    $("username").disabled = tokens;
    $("token-field").hidden = !tokens;
    $("token").disabled = !tokens;
    if (tokens && state.config.login_url) {
      // The operator's sign-in service: it sends the browser back here with #token=JWT.
      const login = new URL(state.config.login_url);
      login.searchParams.set("return_to", location.origin + location.pathname);
      $("login-link").href = login.toString();
      $("login-link").hidden = false;
      $("token-label").textContent = "or paste a token";
    }
    const returned = tokens ? tokenFromLocation() : null;
    if (returned) { signIn({ token: returned }); return; }
    const saved = sessionStorage.getItem("chatlog.auth");
    if (saved) signIn(JSON.parse(saved));
  }

  /** A token a sign-in service sent back in the URL's fragment (#token=JWT), taken out of the
   *  address bar and the history at once, so it is not bookmarked or shared by accident. */
  function tokenFromLocation() {
    const token = new URLSearchParams(location.hash.slice(1)).get("token");
    if (token) history.replaceState(null, "", location.pathname + location.search);
    return token;
  }

  function signIn(auth) {
    state.auth = auth;
    state.user = auth.username || tokenSubject(auth.token);
    sessionStorage.setItem("chatlog.auth", JSON.stringify(auth));
    state.outbox = new Outbox(state.user || "");
    $("me").textContent = state.user || "";
    $("sign-in").hidden = true;
    $("app").hidden = false;
    $("sign-out").hidden = false;
    $("rooms-toggle").hidden = false;
    connect();
  }

  /** Back to the sign-in form, saying why (the outbox stays, for the next sign-in). */
  function signedOut(reason) {
    sessionStorage.removeItem("chatlog.auth");
    $("app").hidden = true;
    $("sign-in").hidden = false;
    notice(reason);
  }

  function signOut() {
    sessionStorage.removeItem("chatlog.auth");
    if (state.socket) state.socket.disconnect();
    location.reload();
  }

  // ---------- the connection ----------

  function connect() {
    const socket = io({ auth: state.auth });
    state.socket = socket;

    socket.on("connect", async () => {
      setStatus(true);
      notice("");
      // For the browser test (and the curious): how the last connection began.
      document.body.dataset.connects = String(Number(document.body.dataset.connects || 0) + 1);
      document.body.dataset.recovered = String(socket.recovered === true);
      if (socket.recovered) { flush(); return; } // connection state recovery gave back the rooms and what was missed
      // A new session: be in every room again, each from the last message seen (nothing missed, nothing twice).
      try {
        // Only rooms the page knew before asking can be gone: one the user joins while the
        // answer is on its way is not in it yet, and must not be dropped.
        const before = new Set(state.rooms.keys());
        const groups = (await call("my-groups", {})).groups;
        for (const info of groups) {
          const known = state.rooms.get(info.group);
          if (!known) { addRoom(info); continue; }
          known.unreadCount = known === state.current ? 0 : info.unread;
          known.mentions = known === state.current ? 0 : info.mentions;
          known.lastRead = info.last_read ?? null;
        }
        const listed = new Set(groups.map((g) => g.group));
        for (const room of [...state.rooms.values()]) {
          if (listed.has(room.group)) await join(room);
          else if (before.has(room.group)) dropRoom(room.group); // left, or removed, while away
          // else: joined meanwhile; its own join subscribed it
        }
        // The joins replayed what was missed, which counted as unread here: the server's counts
        // (which include them, once) are the ones to show.
        for (const info of (await call("my-groups", {})).groups) {
          const room = state.rooms.get(info.group);
          if (!room || room === state.current) continue;
          room.unreadCount = info.unread;
          room.mentions = info.mentions;
        }
        renderRoomList();
        refreshPublicRooms();
        if (!state.current && state.rooms.size) open(state.rooms.values().next().value.group);
      } catch (error) {
        notice(error.message);
      }
      flush(); // what was typed while away goes out after the rooms are caught up
    });
    socket.on("disconnect", (reason) => {
      setStatus(false);
      // The server ended the session itself (the user's tokens were revoked): the client does
      // not reconnect by itself then, and the token would be refused anyway.
      if (reason === "io server disconnect") signedOut("The server ended this session (your sign-in was revoked): sign in again.");
    });
    socket.on("connect_error", (error) => {
      setStatus(false);
      if (error.data && error.data.code === "unauthorized") {
        socket.disconnect();
        signedOut("Sign-in refused: " + error.message);
      }
    });

    socket.on("send-group-message", (message) => {
      const room = state.rooms.get(message.group);
      if (!room) return;
      const fresh = !room.messages.has(message.id) && (room.lastRead === null || message.id > room.lastRead);
      addMessage(room, message);
      if (room !== state.current || document.hidden) {
        if (fresh && message.username !== state.user) { room.unreadCount += 1; renderRoomList(); }
      } else {
        scrollToEnd(room, true);
        markRead(room);
      }
    });
    socket.on("mentioned", ({ group }) => {
      const room = state.rooms.get(group);
      if (room && (room !== state.current || document.hidden)) { room.mentions += 1; renderRoomList(); }
    });
    socket.on("read-marker", ({ group, id }) => {
      // This user read the room here or on another device.
      const room = state.rooms.get(group);
      if (!room || (room.lastRead !== null && id <= room.lastRead)) return;
      room.lastRead = id;
      if (room.lastId === null || id >= room.lastId) { room.unreadCount = 0; room.mentions = 0; }
      renderRoomList();
    });
    socket.on("reaction-added", ({ group, id, emoji, username }) => reacted(group, id, emoji, username, true));
    socket.on("reaction-removed", ({ group, id, emoji, username }) => reacted(group, id, emoji, username, false));
    socket.on("direct-opened", ({ group, by, with: peer }) => {
      if (state.rooms.has(group)) return;
      const room = addRoom({ group, name: by === state.user ? peer : by, direct: true, private: true });
      join(room).then(() => renderRoomList(), (error) => notice(error.message));
    });
    socket.on("message-edited", (edit) => {
      const room = state.rooms.get(edit.group);
      const item = room && room.messages.get(edit.id);
      if (!item) return;
      item.querySelector(".text").textContent = edit.message;
      markEdited(item);
    });
    socket.on("message-deleted", (deletion) => {
      const room = state.rooms.get(deletion.group);
      const item = room && room.messages.get(deletion.id);
      if (item) markDeleted(item);
    });
    // The tutorial's user-joined / user-left / user-typing carry only a username; the page
    // listens to their companions, which say in which room.
    socket.on("member-joined", ({ group, username }) => membershipChanged(group, username, "joined"));
    socket.on("member-left", ({ group, username }) => membershipChanged(group, username, "left"));
    socket.on("user-online", ({ group, username }) => presence(group, username, true));
    socket.on("user-offline", ({ group, username }) => presence(group, username, false));
    socket.on("typing", ({ group, username }) => showTyping(group, username));
    socket.on("member-invited", ({ group, username, by }) => {
      addNotice(state.rooms.get(group), `${by} invited ${username}`);
      if (state.current && state.current.group === group) loadMembers(state.current);
    });
    socket.on("invitation-revoked", ({ group, username, by }) => {
      addNotice(state.rooms.get(group), `${by} withdrew ${username}'s invitation`);
      if (state.current && state.current.group === group) loadMembers(state.current);
    });
    socket.on("member-removed", ({ group, username, by }) => {
      if (username === state.user) return; // removed-from-group follows
      addNotice(state.rooms.get(group), `${by} removed ${username}`);
      if (state.current && state.current.group === group) loadMembers(state.current);
    });
    socket.on("removed-from-group", ({ group, by }) => {
      dropRoom(group);
      notice(`${by} removed you from ${group}`);
    });
    socket.on("error", (error) => notice(`${error.event}: ${error.message}`));
  }

  function setStatus(online) {
    $("status").textContent = online ? "online" : "reconnecting…";
    $("status").classList.toggle("online", online);
  }

  // ---------- rooms ----------

  function addRoom(info) {
    const room = new Room(info);
    state.rooms.set(room.group, room);
    for (const entry of state.outbox.entries()) if (entry.group === room.group) showOutgoing(room, entry);
    return room;
  }

  function dropRoom(group) {
    const room = state.rooms.get(group);
    if (!room) return;
    state.rooms.delete(group);
    if (state.current === room) {
      state.current = null;
      $("room-view").hidden = true;
      $("room-empty").hidden = false;
    }
    renderRoomList();
    refreshPublicRooms();
  }

  /** Subscribes to a room; from its last message when the page has seen one (a resume). */
  async function join(room) {
    const payload = room.lastId === null ? { group: room.group } : { group: room.group, after: room.lastId };
    const ack = await call("join-group", payload);
    // Everything of this room up to last_id has reached this socket (replayed before the ack,
    // or in the history page), so the next join resumes after it, even in a room whose
    // messages the page has not seen any of yet.
    if (ack.last_id !== null && ack.last_id !== undefined && (room.lastId === null || ack.last_id > room.lastId)) {
      room.lastId = ack.last_id;
    }
    room.members = ack.members;
    room.online = new Set(ack.online);
    // The first join says who is online; a join again after a reconnection changes the dots
    // only, so a server restart does not announce everyone again.
    if (room.announced === null) room.announced = new Map(ack.members.map((name) => [name, room.online.has(name)]));
    return ack;
  }

  async function joinNew(group) {
    const room = state.rooms.get(group) || addRoom({ group });
    try {
      await join(room);
      notice("");
      renderRoomList();
      refreshPublicRooms();
      open(group);
    } catch (error) {
      if (!room.loaded) state.rooms.delete(group);
      notice(error.message);
    }
  }

  /** The rooms and direct rooms, each with its unread badge (`@` when the user is mentioned). */
  function renderRoomList() {
    const mine = $("my-rooms");
    const direct = $("direct-rooms");
    mine.replaceChildren();
    direct.replaceChildren();
    for (const room of [...state.rooms.values()].sort((a, b) => a.name.localeCompare(b.name))) {
      const button = el("button", "", (room.direct ? "@ " : "# ") + room.name);
      if (room.private && !room.direct) button.append(el("span", "tag", "private"));
      if (room.unreadCount > 0 || room.mentions > 0) {
        const badge = el("span", "badge" + (room.mentions > 0 ? " mention" : ""),
                         room.mentions > 0 ? "@" + room.mentions : String(room.unreadCount));
        badge.title = `${room.unreadCount} unread` + (room.mentions > 0 ? `, ${room.mentions} mentioning you` : "");
        button.append(badge);
      }
      button.type = "button";
      button.dataset.group = room.group;
      button.classList.toggle("active", room === state.current);
      button.classList.toggle("unread", room.unreadCount > 0);
      button.addEventListener("click", () => open(room.group));
      const item = el("li");
      item.append(button);
      (room.direct ? direct : mine).append(item);
    }
  }

  /** Tells the server the open room is read up to its last message (at most once a second). */
  function markRead(room) {
    if (room.markTimer !== null) return;
    room.markTimer = setTimeout(async () => {
      room.markTimer = null;
      const last = room.lastId;
      if (last === null || (room.lastRead !== null && last <= room.lastRead) || room !== state.current || document.hidden) return;
      try {
        await call("mark-read", { group: room.group, id: last });
      } catch {
        // a message of another room, or one past the window: the next message marks again
      }
    }, room.lastRead === null && room.unreadCount === 0 ? 0 : MARK_READ_EVERY_MS);
  }

  /** The public rooms the user is not in, from the HTTP API (GET /api/rooms). */
  async function refreshPublicRooms() {
    try {
      const response = await fetch("/api/rooms", { headers: apiHeaders() });
      if (!response.ok) return;
      const list = $("public-rooms");
      list.replaceChildren();
      for (const info of (await response.json()).rooms) {
        if (info.private || state.rooms.has(info.group)) continue;
        const button = el("button", "", "# " + info.name);
        button.type = "button";
        button.dataset.group = info.group;
        button.title = `${info.members} members; join`;
        button.addEventListener("click", () => joinNew(info.group));
        const item = el("li");
        item.append(button);
        list.append(item);
      }
    } catch {
      // the list refreshes on the next connection
    }
  }

  async function open(group) {
    const room = state.rooms.get(group);
    if (!room) return;
    state.current = room;
    room.unreadCount = 0;
    room.mentions = 0;
    cancelReply();
    $("room-empty").hidden = true;
    $("room-view").hidden = false;
    $("room-title").textContent = room.name;
    $("room-kind").textContent = room.direct ? "direct" : room.private ? "private" : "public";
    $("members").hidden = true;
    $("typing").textContent = "";
    $("messages").replaceWith(room.list);
    room.list.id = "messages";
    room.list.onscroll = () => { if (room.list.scrollTop < 40) loadOlder(room); };
    renderRoomList();
    if (window.matchMedia("(max-width: 700px)").matches) $("sidebar").classList.add("closed");
    if (!room.loaded) {
      try {
        const page = await call("history", { group, limit: HISTORY_PAGE });
        for (const message of page.messages) addMessage(room, message);
        room.atStart = page.messages.length < HISTORY_PAGE;
        room.loaded = true;
        if (room.atStart) room.list.prepend(el("li", "top", "the start of " + room.name));
      } catch (error) {
        notice(error.message);
      }
    }
    scrollToEnd(room, false);
    loadMembers(room);
    markRead(room);
    $("text").focus();
  }

  /** Opens a search result's room and shows the message (loading the history around it). */
  async function showFound(message) {
    await open(message.group);
    const room = state.rooms.get(message.group);
    if (!room) return;
    while (!room.messages.has(message.id) && !room.atStart && room.loaded) {
      const before = room.messages.size;
      await loadOlder(room);
      if (room.messages.size === before) break;
    }
    const item = room.messages.get(message.id);
    if (!item) return;
    item.scrollIntoView({ block: "center" });
    item.classList.add("found");
    setTimeout(() => item.classList.remove("found"), 2000);
  }

  /** Scroll-back: the page before the oldest message shown, keeping the view where it was. */
  async function loadOlder(room) {
    if (!room.loaded || room.atStart || room.loadingOlder) return;
    const oldest = room.messages.keys().next().value;
    if (oldest === undefined) return;
    room.loadingOlder = true;
    try {
      const page = await call("history", { group: room.group, before: oldest, limit: HISTORY_PAGE });
      const height = room.list.scrollHeight;
      for (const message of page.messages) addMessage(room, message);
      if (page.messages.length < HISTORY_PAGE) {
        room.atStart = true;
        room.list.prepend(el("li", "top", "the start of " + room.name));
      }
      room.list.scrollTop += room.list.scrollHeight - height;
    } catch (error) {
      notice(error.message);
    } finally {
      room.loadingOlder = false;
    }
  }

  function scrollToEnd(room, onlyIfNear) {
    const list = room.list;
    if (!onlyIfNear || list.scrollHeight - list.scrollTop - list.clientHeight < 120) list.scrollTop = list.scrollHeight;
  }

  // ---------- messages ----------

  /** Adds a message in id order; one already shown is left as it is (a replay, a history page). */
  function addMessage(room, message) {
    if (room.messages.has(message.id)) return;
    if (room.lastId === null || message.id > room.lastId) room.lastId = message.id;
    // One of ours still shown as sending: the message takes its place.
    if (message.client_id && message.username === state.user) {
      const outgoing = outgoingItem(room, message.client_id);
      if (outgoing) outgoing.remove();
    }
    const item = el("li", "message");
    item.dataset.id = String(message.id);
    if (message.reply_to !== undefined && message.reply_to !== null) item.append(quote(room, message.reply_to));
    item.append(el("span", "who", message.username), el("span", "text", message.message === null ? "" : message.message),
                el("span", "meta", formatTime(message.created)));
    if (message.message && message.username !== state.user && mentionsMe(message.message)) item.classList.add("mine-mentioned");
    if (message.edited) markEdited(item);
    if (message.deleted || message.message === null) markDeleted(item);
    else item.append(actions(room, message.id, item, message.username === state.user));
    if (message.reactions) room.reactions.set(message.id, new Map(Object.entries(message.reactions)));
    item.append(el("span", "reactions"));
    place(room, message.id, item);
    renderReactions(room, message.id);
  }

  /** Whether `text` mentions this user (`@name`, as the server reads mentions). */
  function mentionsMe(text) {
    return text.split(/\s+/).some((word) => word.startsWith("@") && word.slice(1).replace(/[.,;:!?)\]}'"]+$/, "") === state.user);
  }

  /** The line above a reply: who wrote the message it answers, and the start of its text. */
  function quote(room, id) {
    const original = room.messages.get(id);
    const who = original ? original.querySelector(".who").textContent : "";
    const text = original ? original.querySelector(".text").textContent : "an earlier message";
    const line = el("span", "quote", "↪ " + (who ? who + ": " : "") + text);
    line.dataset.replyTo = String(id);
    return line;
  }

  /** A message's reactions: one button per emoji with its count, the user's own highlighted (a click takes it back or gives it). */
  function renderReactions(room, id) {
    const item = room.messages.get(id);
    const holder = item && item.querySelector(".reactions");
    if (!holder) return;
    holder.replaceChildren();
    for (const [emoji, users] of room.reactions.get(id) || []) {
      if (users.length === 0) continue;
      const mine = users.includes(state.user);
      const button = el("button", mine ? "mine" : "", `${emoji} ${users.length}`);
      button.type = "button";
      button.dataset.emoji = emoji;
      button.title = users.join(", ");
      button.addEventListener("click", () => react(room, id, emoji, !mine));
      holder.append(button);
    }
  }

  function react(room, id, emoji, adding) {
    call(adding ? "react" : "unreact", { group: room.group, id, emoji }).catch((error) => notice(error.message));
  }

  function reacted(group, id, emoji, username, added) {
    const room = state.rooms.get(group);
    if (!room) return;
    const reactions = room.reactions.get(id) || new Map();
    const users = (reactions.get(emoji) || []).filter((name) => name !== username);
    if (added) users.push(username);
    if (users.length) reactions.set(emoji, users); else reactions.delete(emoji);
    room.reactions.set(id, reactions);
    renderReactions(room, id);
  }

  /** Puts a message's item in id order, above the messages still being sent. */
  function place(room, messageID, item) {
    // Messages arrive in id order but for history pages: find the place from the end.
    let next = null;
    for (const [id, other] of [...room.messages].reverse()) {
      if (id < messageID) break;
      next = other;
    }
    if (next) {
      room.list.insertBefore(item, next);
      room.messages = new Map([...room.messages, [messageID, item]].sort((a, b) => a[0] - b[0]));
    } else {
      room.list.insertBefore(item, room.list.querySelector("li.outgoing"));
      room.messages.set(messageID, item);
    }
  }

  /** A message's actions: reply and react; edit and delete for the user's own. */
  function actions(room, id, item, own) {
    const actions = el("span", "actions");
    const reply = el("button", "reply", "reply");
    reply.type = "button";
    reply.addEventListener("click", () => startReply(room, id, item));
    const add = el("button", "react", "react");
    add.type = "button";
    add.addEventListener("click", () => {
      const open = item.querySelector(".palette");
      if (open) { open.remove(); return; }
      const palette = el("span", "palette");
      for (const emoji of PALETTE) {
        const choice = el("button", "", emoji);
        choice.type = "button";
        choice.dataset.emoji = emoji;
        choice.addEventListener("click", () => { palette.remove(); react(room, id, emoji, true); });
        palette.append(choice);
      }
      actions.after(palette);
    });
    actions.append(reply, add);
    if (own) {
      const edit = el("button", "edit", "edit");
      edit.type = "button";
      edit.addEventListener("click", () => startEdit(room, id, item));
      const remove = el("button", "delete", "delete");
      remove.type = "button";
      remove.addEventListener("click", () => call("delete-message", { group: room.group, id }).catch((e) => notice(e.message)));
      actions.append(edit, remove);
    }
    return actions;
  }

  /** The next message sent in this room answers message `id`. */
  function startReply(room, id, item) {
    state.replyTo = { group: room.group, id };
    $("replying-to").textContent = "Replying to " + item.querySelector(".who").textContent + ": " + item.querySelector(".text").textContent;
    $("replying").hidden = false;
    $("text").focus();
  }

  function cancelReply() {
    state.replyTo = null;
    $("replying").hidden = true;
  }

  function startEdit(room, id, item) {
    const text = item.querySelector(".text");
    const form = el("form", "row edit-form");
    const input = el("input");
    input.value = text.textContent;
    const save = el("button", "", "Save");
    save.type = "submit";
    form.append(input, save);
    text.hidden = true;
    item.insertBefore(form, text.nextSibling);
    input.focus();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await call("edit-message", { group: room.group, id, message: input.value });
        form.remove();
        text.hidden = false;
      } catch (error) {
        notice(error.message);
      }
    });
  }

  function markEdited(item) {
    if (!item.querySelector(".edited")) item.querySelector(".meta").after(el("span", "meta edited", "(edited)"));
  }

  function markDeleted(item) {
    item.classList.add("deleted");
    item.querySelector(".text").textContent = "message deleted";
    for (const gone of item.querySelectorAll(".actions, .palette")) gone.remove();
    const reactions = item.querySelector(".reactions");
    if (reactions) reactions.replaceChildren();
  }

  function addNotice(room, text) {
    if (!room) return;
    room.list.append(el("li", "notice", text));
    if (room === state.current) scrollToEnd(room, true);
  }

  // ---------- the outbox: sending until acknowledged ----------

  /** Puts a typed message in the outbox and sends it; false when the outbox is full. */
  function send(text) {
    const room = state.current;
    if (!room || !text.trim()) return true;
    if (state.outbox.entries().length >= OUTBOX_LIMIT) {
      notice(`${OUTBOX_LIMIT} messages are waiting to be sent; wait for the connection before sending more.`);
      return false;
    }
    // The client id, given now, makes every later try of this message the same send.
    const entry = { group: room.group, message: text, created: Date.now(), client_id: randomID() };
    if (state.replyTo && state.replyTo.group === room.group) entry.reply_to = state.replyTo.id;
    cancelReply();
    state.outbox.add(entry);
    showOutgoing(room, entry);
    scrollToEnd(room, false);
    flush();
    return true;
  }

  function outgoingItem(room, clientID) {
    for (const item of room.list.querySelectorAll("li.outgoing")) if (item.dataset.clientId === clientID) return item;
    return null;
  }

  /** Shows an outbox entry at the end of its room: sending, or refused with the reason and what to do. */
  function showOutgoing(room, entry) {
    const old = outgoingItem(room, entry.client_id);
    const item = el("li", "message outgoing " + (entry.refused ? "refused" : "pending"));
    item.dataset.clientId = entry.client_id;
    item.append(el("span", "who", state.user || ""), el("span", "text", entry.message));
    if (entry.refused) {
      item.append(el("span", "meta reason", "not sent: " + entry.refused));
      const retry = el("button", "retry", "send again");
      retry.type = "button";
      retry.addEventListener("click", () => {
        state.outbox.update(entry.client_id, { refused: undefined });
        showOutgoing(room, { ...entry, refused: undefined });
        flush();
      });
      const discard = el("button", "discard", "discard");
      discard.type = "button";
      discard.addEventListener("click", () => { state.outbox.remove(entry.client_id); item.remove(); });
      const actions = el("span", "outgoing-actions");
      actions.append(retry, discard);
      item.append(actions);
    } else {
      item.append(el("span", "meta", "sending…"));
    }
    if (old) old.replaceWith(item);
    else room.list.append(item);
  }

  /** The server took the message: it is shown as sent, in its place (unless its broadcast already was). */
  function delivered(entry, messageID) {
    state.outbox.remove(entry.client_id);
    const room = state.rooms.get(entry.group);
    if (!room) return;
    const item = outgoingItem(room, entry.client_id);
    if (!item) return;
    item.remove();
    addMessage(room, { group: entry.group, id: messageID, message: entry.message, username: state.user,
                       created: entry.created, client_id: entry.client_id, reply_to: entry.reply_to });
  }

  function refused(entry, reason) {
    state.outbox.update(entry.client_id, { refused: reason });
    const room = state.rooms.get(entry.group);
    if (room) {
      showOutgoing(room, { ...entry, refused: reason });
      if (room === state.current) scrollToEnd(room, true);
    } else {
      // Not in the room any more: say so with the text, which is all that is left of it.
      state.outbox.remove(entry.client_id);
      notice(`Not sent to ${entry.group} (${reason}): ${entry.message}`);
    }
  }

  /**
   * Sends the outbox, oldest first, one at a time (so the room gets them in the order typed),
   * while connected. A send the server could not take now (no answer, the connection lost, a
   * server stopping or busy) is tried again, after 1 s, 2 s, … up to 30 s, or at once on a new
   * connection; a refusal marks the entry refused and goes on with the next.
   */
  async function flush() {
    if (state.flushing) {
      if (state.wake) state.wake();
      return;
    }
    state.flushing = true;
    let delay = RETRY_FIRST_MS;
    try {
      while (state.socket && state.socket.connected) {
        const entry = state.outbox.next();
        if (!entry) break;
        const { group, message, created, client_id, reply_to } = entry;
        try {
          const payload = { group, message, created, client_id };
          if (reply_to !== undefined) payload.reply_to = reply_to;
          const ack = await call("send-group-message", payload);
          delivered(entry, ack.id);
          delay = RETRY_FIRST_MS;
        } catch (error) {
          if (!TRANSIENT.has(error.code)) { refused(entry, error.message); continue; }
          await new Promise((resolve) => { state.wake = resolve; setTimeout(resolve, delay); });
          state.wake = null;
          delay = Math.min(delay * 2, RETRY_MAX_MS);
        }
      }
    } finally {
      state.flushing = false;
    }
  }

  // ---------- members, presence, typing ----------

  async function loadMembers(room) {
    try {
      const ack = await call("members", { group: room.group });
      room.owner = ack.owner;
      if (room.private !== ack.private) {
        room.private = ack.private;
        renderRoomList();
        if (room === state.current) $("room-kind").textContent = room.direct ? "direct" : room.private ? "private" : "public";
      }
      room.members = ack.members;
      room.online = new Set(ack.online);
      room.invited = ack.invited || [];
      if (room === state.current) renderMembers(room);
    } catch (error) {
      notice(error.message);
    }
  }

  function renderMembers(room) {
    const list = $("member-list");
    list.replaceChildren();
    const mayRemove = room.private && !room.direct && room.owner === state.user; // a direct room's two are fixed
    for (const name of room.members) {
      const item = el("li");
      item.append(el("span", "dot" + (room.online.has(name) ? " on" : "")), el("span", "", name + (name === room.owner ? " (owner)" : "")));
      if (mayRemove && name !== state.user) {
        const remove = el("button", "", "remove");
        remove.type = "button";
        remove.addEventListener("click", () => call("remove-member", { group: room.group, username: name }).catch((e) => notice(e.message)));
        item.append(remove);
      }
      list.append(item);
    }
    $("owner-tools").hidden = !mayRemove;
    const invited = $("invited-list");
    invited.replaceChildren();
    for (const name of room.invited) {
      const item = el("li");
      item.append(el("span", "", name));
      const revoke = el("button", "", "withdraw");
      revoke.type = "button";
      revoke.addEventListener("click", () => call("revoke-invite", { group: room.group, username: name }).catch((e) => notice(e.message)));
      item.append(revoke);
      invited.append(item);
    }
  }

  /** Someone joined or left `group`: a notice in that room; its members, when it is open. */
  async function membershipChanged(group, username, verb) {
    const room = state.rooms.get(group);
    if (!room || username === state.user) return;
    // Only a change to what the page knew is news (a replay after a reconnection, or a list
    // loaded since, may already have it).
    const known = room.members.includes(username);
    if (verb === "joined" ? known : !known) return;
    room.members = verb === "joined" ? [...room.members, username] : room.members.filter((name) => name !== username);
    addNotice(room, `${username} ${verb}`);
    if (room === state.current) loadMembers(room);
  }

  /**
   * Someone came online or went offline: the members' dots follow at once; the room's notice
   * only once the change has held for a few seconds and differs from what the room last said,
   * so a reconnection (theirs, ours, or a server restart) announces nothing.
   */
  function presence(group, username, online) {
    const room = state.rooms.get(group);
    if (!room || username === state.user) return;
    if (online === room.online.has(username)) return;
    if (online) room.online.add(username); else room.online.delete(username);
    if (room === state.current) renderMembers(room);
    setTimeout(() => {
      if (state.rooms.get(group) !== room || room.announced === null) return;
      const now = room.online.has(username);
      if (now !== online || room.announced.get(username) === now) return;
      room.announced.set(username, now);
      addNotice(room, `${username} is ${now ? "online" : "offline"}`);
    }, PRESENCE_SETTLE_MS);
  }

  function showTyping(group, username) {
    const room = state.current;
    if (!room || room.group !== group || username === state.user) return;
    clearTimeout(state.typers.get(username));
    state.typers.set(username, setTimeout(() => { state.typers.delete(username); renderTyping(); }, TYPING_SHOWN_MS));
    renderTyping();
  }

  function renderTyping() {
    const names = [...state.typers.keys()];
    $("typing").textContent = names.length === 0 ? "" : names.join(", ") + (names.length === 1 ? " is typing…" : " are typing…");
  }

  // ---------- the forms ----------

  document.addEventListener("DOMContentLoaded", () => {
    $("sign-in").addEventListener("submit", (event) => {
      event.preventDefault();
      const auth = state.config.auth === "token" ? { token: $("token").value.trim() } : { username: $("username").value.trim() };
      signIn(auth);
    });
    $("sign-out").addEventListener("click", signOut);
    $("join-room").addEventListener("submit", (event) => {
      event.preventDefault();
      joinNew($("join-id").value.trim());
      $("join-id").value = "";
    });
    $("rooms-toggle").addEventListener("click", () => $("sidebar").classList.toggle("closed"));
    $("open-direct").addEventListener("submit", async (event) => {
      event.preventDefault();
      const username = $("direct-with").value.trim();
      try {
        const { group } = await call("open-direct", { username });
        $("direct-with").value = "";
        if (!state.rooms.has(group)) addRoom({ group, name: username, direct: true, private: true });
        await joinNew(group);
      } catch (error) {
        notice(error.message);
      }
    });
    $("reply-cancel").addEventListener("click", cancelReply);
    $("search").addEventListener("submit", async (event) => {
      event.preventDefault();
      const list = $("search-list");
      list.replaceChildren();
      $("search-results").hidden = false;
      try {
        const { messages } = await call("search", { query: $("search-query").value });
        if (messages.length === 0) list.append(el("li", "top", "nothing found"));
        for (const message of messages) {
          const room = state.rooms.get(message.group);
          const button = el("button");
          button.type = "button";
          button.dataset.group = message.group;
          button.dataset.id = String(message.id);
          button.append(el("span", "where", (room && room.direct ? "@ " : "# ") + (room ? room.name : message.group)), " ",
                        el("span", "who", message.username + ":"), " ", el("span", "text", message.message));
          button.addEventListener("click", () => showFound(message));
          const item = el("li");
          item.append(button);
          list.append(item);
        }
      } catch (error) {
        list.append(el("li", "top", error.message));
      }
    });
    $("search-close").addEventListener("click", () => { $("search-results").hidden = true; });
    document.addEventListener("visibilitychange", () => { if (!document.hidden && state.current) markRead(state.current); });
    $("create-room").addEventListener("submit", async (event) => {
      event.preventDefault();
      const group = $("new-room").value.trim();
      const isPrivate = $("new-room-private").checked;
      try {
        await call("create-group", { group, private: isPrivate });
        $("new-room").value = "";
        $("new-room-private").checked = false;
        addRoom({ group, private: isPrivate, owner: state.user });
        await joinNew(group);
      } catch (error) {
        notice(error.message);
      }
    });
    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      if (send($("text").value)) $("text").value = "";
    });
    $("text").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        $("composer").requestSubmit();
      }
    });
    $("text").addEventListener("input", () => {
      const now = Date.now();
      if (!state.current || now - state.lastTypingSent < TYPING_SENT_EVERY_MS) return;
      state.lastTypingSent = now;
      state.socket.emit("user-typing", { group: state.current.group });
    });
    $("members-toggle").addEventListener("click", () => {
      const panel = $("members");
      panel.hidden = !panel.hidden;
      if (!panel.hidden && state.current) loadMembers(state.current);
    });
    $("leave").addEventListener("click", async () => {
      const room = state.current;
      if (!room) return;
      try {
        await call("leave-group", { group: room.group });
        dropRoom(room.group);
      } catch (error) {
        notice(error.message);
      }
    });
    $("invite-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const room = state.current;
      try {
        await call("invite", { group: room.group, username: $("invitee").value.trim() });
        $("invitee").value = "";
        loadMembers(room);
      } catch (error) {
        notice(error.message);
      }
    });
    start();
  });
})();
