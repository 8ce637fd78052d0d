import Logging
import Metrics
import NIOCore
import ServiceLifecycle
import SocketIO
import Synchronization

/// Sending under the lock: events, acks and encoded packets to sockets, and carrying out what
/// the state machines ask for (writes, closes, the application calls to make).
extension SocketIOServer.State {
    /// Sends an event to one socket.
    mutating func emit(_ socket: SocketRef, event: String, _ arguments: [JSONValue]) {
        send(to: socket) { $0.emit(namespace: socket.namespace, event: event, arguments: arguments, now: .now).actions }
    }

    mutating func emit(_ socket: SocketRef, event: String, relaying arguments: SocketEventArguments) {
        send(to: socket) { $0.emit(namespace: socket.namespace, event: event, relaying: arguments, now: .now) }
    }

    /// Sends an already encoded packet to a socket still connected to its namespace; on a
    /// WebSocket, as `frame` (the packet's frame, shared by every recipient) when given.
    mutating func send(_ packet: EnginePacket, frame: EncodedFrame?, to socket: SocketRef) {
        enum Route { case websocket(SocketIOServer.Outbound), engine([EngineSession.Action]) }
        guard let route = modify(socket.engineID, { connection -> Route? in
            guard connection.socket.sockets[socket.namespace] == socket.socketID else { return nil }
            if connection.engine.transport == .websocket, let outbound = connection.websocket {
                // What `engine.send` would ask for (`writeFrames`), without its arrays and a
                // second lookup of the session to carry it out.
                return .websocket(outbound)
            }
            return .engine(connection.engine.send([packet]))
        }) ?? nil else { return }
        switch route {
        case .websocket(let outbound):
            if case .dropped = outbound.queue.yield(frame.map { .frame($0) } ?? .packet(packet)) {
                deferredCalls += tooSlow(outbound, sid: socket.engineID)
            }
        case .engine(let actions):
            deferredCalls += apply(actions, to: socket.engineID)
            deferredCalls += closeIfOverBudget(socket.engineID)
        }
    }

    /// Carries out what the socket's session does to emit (`emit` asks it): sends, and
    /// nothing for the application.
    mutating func send(to socket: SocketRef, _ emit: (inout SocketSession) -> [SocketSession.Action]) {
        guard let actions = modify(socket.engineID, { emit(&$0.socket) }) else { return }
        deferredCalls += apply(actions, to: socket.engineID)
    }

    /// Emits with an ack request and registers `continuation` for the answer; false when
    /// the socket is gone (nothing was sent).
    mutating func emitWithAck(_ socket: SocketRef, event: String, _ arguments: [JSONValue], timeout: Duration,
                     continuation: CheckedContinuation<[JSONValue]?, Never>) -> Bool {
        guard let (actions, id) = modify(socket.engineID, {
            $0.socket.emit(namespace: socket.namespace, event: event, arguments: arguments, ackTimeout: timeout, now: .now)
        }) else { return false }
        deferredCalls += apply(actions, to: socket.engineID)
        guard let id else { return false }
        ackWaiters[SocketIOServer.AckKey(engineID: socket.engineID, namespace: socket.namespace, id: id)] = continuation
        return true
    }

    /// Answers a client's acknowledgement request.
    mutating func ack(_ socket: SocketRef, id: UInt64, _ arguments: [JSONValue]) {
        guard let actions = modify(socket.engineID, { $0.socket.ack(namespace: socket.namespace, id: id, arguments: arguments) }) else {
            return
        }
        deferredCalls += apply(actions, to: socket.engineID)
    }

    mutating func disconnect(_ socket: SocketRef) -> [SocketIOServer.AppCall] {
        guard let actions = modify(socket.engineID, { $0.socket.disconnect(namespace: socket.namespace, now: .now) }) else { return [] }
        return apply(actions, to: socket.engineID)
    }

    mutating func decide(_ request: ConnectRequest, _ decision: ConnectDecision) -> [SocketIOServer.AppCall] {
        guard let actions = modify(request.engineID, { connection in
            switch decision {
            case .accept(let pid):
                connection.socket.accept(namespace: request.namespace, socketID: SocketIOServer.randomID(), pid: pid)
            case .refuse(let message, let data):
                connection.socket.refuse(namespace: request.namespace, message: message, data: data)
            }
        }) else { return [] }
        return apply(actions, to: request.engineID)
    }

    mutating func apply(_ actions: [EngineSession.Action], to sid: String) -> [SocketIOServer.AppCall] {
        var calls: [SocketIOServer.AppCall] = []
        for action in actions {
            switch action {
            case .answerPoll(let body):
                connections[SessionID(sid)]?.pendingPoll?.resume(returning: SocketIOServer.PollOutcome(result: .body(body)))
                connections[SessionID(sid)]?.pendingPoll = nil
            case .rejectPoll:
                connections[SessionID(sid)]?.pendingPoll?.resume(returning: SocketIOServer.PollOutcome(result: .rejected))
                connections[SessionID(sid)]?.pendingPoll = nil
            case .closeProbe:
                connections[SessionID(sid)]?.probe?.queue.finish()
                connections[SessionID(sid)]?.probe = nil
            case .writeFrames(let packets):
                if let outbound = modify(sid, { $0.websocket }) ?? nil { calls += write(packets, to: outbound, sid: sid) }
            case .writeProbeFrames(let packets):
                if let outbound = modify(sid, { $0.probe }) ?? nil { calls += write(packets, to: outbound, sid: sid) }
            case .deliver(let payloads) where configuration.engineEcho:
                guard let echo = modify(sid, { $0.engine.send(payloads.map { EnginePacket(.message, $0) }) }) else { break }
                calls += apply(echo, to: sid)
            case .deliver(let payloads):
                let now = ContinuousClock.now
                for payload in payloads {
                    guard let socketActions = modify(sid, { $0.socket.received(payload, now: now) }) else { break }
                    calls += apply(socketActions, to: sid)
                }
            case .closed(let reason):
                // A polling client whose buffer overflowed (a WebSocket one is counted in `tooSlow`).
                if reason == .tooSlow { SocketIOServer.slowClientsDisconnected.increment() }
                calls += closeConnection(sid, reason: reason)
            }
        }
        resumeDrainWaitersIfDrained(sid)
        return calls
    }

    /// Resumes `outboundDrained` waiters of a session whose polling buffer is empty (or
    /// that is gone).
    mutating func resumeDrainWaitersIfDrained(_ sid: String) {
        guard !drainWaiters.isEmpty, connections[SessionID(sid)].map({ $0.engine.bufferedPacketCount == 0 }) ?? true,
              let waiters = drainWaiters.removeValue(forKey: sid) else { return }
        for waiter in waiters { waiter.resume() }
    }

    mutating func apply(_ actions: [SocketSession.Action], to sid: String) -> [SocketIOServer.AppCall] {
        var calls: [SocketIOServer.AppCall] = []
        for action in actions {
            switch action {
            case .send(let packets):
                guard let engineActions = modify(sid, { $0.engine.send(packets) }) else { continue }
                calls += apply(engineActions, to: sid)
                calls += closeIfOverBudget(sid)
            case .authorize(let namespace, let auth, let recovery):
                calls.append(.authorize(ConnectRequest(engineID: sid, namespace: namespace, auth: auth, recovery: recovery)))
            case .event(let namespace, let name, let arguments, let ackID):
                guard let socketID = modify(sid, { $0.socket.sockets[namespace] }) ?? nil else { continue }
                calls.append(.event(SocketRef(engineID: sid, namespace: namespace, socketID: socketID),
                                    name: name, arguments: arguments, ackID: ackID))
            case .ackReceived(let namespace, let id, let arguments):
                ackWaiters.removeValue(forKey: SocketIOServer.AckKey(engineID: sid, namespace: namespace, id: id))?.resume(returning: arguments)
            case .ackTimedOut(let namespace, let id):
                ackWaiters.removeValue(forKey: SocketIOServer.AckKey(engineID: sid, namespace: namespace, id: id))?.resume(returning: nil)
            case .connected(let namespace, let socketID):
                forgetAnonymous(sid)
                calls.append(.connected(SocketRef(engineID: sid, namespace: namespace, socketID: socketID)))
            case .disconnected(let namespace, let socketID, let reason):
                calls += forget(SocketRef(engineID: sid, namespace: namespace, socketID: socketID), reason: reason)
            case .closeConnection(let reason):
                guard let engineActions = modify(sid, { $0.engine.close() }) else { continue }
                logger.info("socket.io connection closed", metadata: ["socketio.sid": "\(sid)", "socketio.reason": "\(reason)"])
                calls += apply(engineActions, to: sid)
            }
        }
        return calls
    }

    /// Fails a disconnected socket's pending acks.
    mutating func forget(_ socket: SocketRef, reason: SocketSession.DisconnectReason) -> [SocketIOServer.AppCall] {
        for key in ackWaiters.keys where key.engineID == socket.engineID && key.namespace == socket.namespace {
            ackWaiters.removeValue(forKey: key)?.resume(returning: nil)
        }
        return [.disconnected(socket, reason)]
    }

    /// The session connected a namespace, or closed: it no longer counts as anonymous.
    mutating func forgetAnonymous(_ sid: String) {
        guard let (client, _) = anonymous.removeValue(forKey: sid) else { return }
        let left = anonymousByClient[client, default: 1] - 1
        anonymousByClient[client] = left > 0 ? left : nil
    }

    mutating func closeConnection(_ sid: String, reason: EngineSession.CloseReason) -> [SocketIOServer.AppCall] {
        guard let connection = connections.removeValue(forKey: SessionID(sid)) else { return [] }
        forgetAnonymous(sid)
        logger.debug("engine.io session closed", metadata: ["socketio.sid": "\(sid)", "socketio.reason": "\(reason)"])

        connection.pendingPoll?.resume(returning: SocketIOServer.PollOutcome(result: .body(EnginePacket.encodePayload([EnginePacket(.noop)]))))
        for waiter in connection.flushWaiters { waiter.resume() }
        connection.websocket?.queue.finish()
        connection.probe?.queue.finish()
        // Only disconnects follow; they need no connection.
        return apply(connection.socket.transportClosedActions(), to: sid)
    }

    /// Queues packets on a WebSocket. A client whose queue is full is too slow: its queue is
    /// aborted (the connection dropped) and its session closed at once, so that it never
    /// holds up its rooms; returns the calls that closing makes.
    @discardableResult
    mutating func write(_ packets: [EnginePacket], to outbound: SocketIOServer.Outbound, sid: String) -> [SocketIOServer.AppCall] {
        for packet in packets {
            if case .dropped = outbound.queue.yield(.packet(packet)) { return tooSlow(outbound, sid: sid) }
        }
        return []
    }

    /// Drops a WebSocket client whose queue is full and closes its session.
    mutating func tooSlow(_ outbound: SocketIOServer.Outbound, sid: String) -> [SocketIOServer.AppCall] {
        logger.warning("socket.io client too slow; closing", metadata: ["socketio.sid": "\(sid)"])
        SocketIOServer.slowClientsDisconnected.increment()
        outbound.queue.abort()
        guard let actions = modify(sid, { $0.engine.transportClosed() }) else { return [] }
        return apply(actions, to: sid)
    }
}
