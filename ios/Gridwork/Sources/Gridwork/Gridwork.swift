import Foundation
// App code needs the generated records and enums (StoreConfig, Incident,
// SyncReport, GridworkError, ...) with this API; re-exporting them saves
// every file a second import.
@_exported import GridworkFFI

/// Categories and grids, as the reference-data observer delivers them together.
public struct ReferenceData: Equatable, Sendable {
    public let categories: [Category]
    public let grids: [Grid]
}

/// The Swift API of the Gridwork core for app code; the counterpart of the
/// Kotlin `app.gridwork.Gridwork`.
///
/// Every method is safe to call from the main actor. The core's quick
/// synchronous calls (they touch the local database) run on a private
/// queue and are awaited; its long ones (`login`, `sync`, `attachPhoto`,
/// ...) are async in the generated API already and run on a core worker
/// thread while the caller only suspends. A few calls that never wait
/// (`setNetwork`, `cancelSync`, `syncStatus`) stay synchronous.
///
/// Observers are `AsyncStream`s: calling `outbox()` etc. subscribes (the
/// current value arrives at once), and the subscription is cancelled when
/// the stream ends: the iterating task is cancelled, or the stream is
/// released. Iterate each stream once (from one task).
///
/// Errors are the generated `GridworkError`; switch on its case, or on its
/// `code` for finer cases (docs/bindings.md lists them).
///
/// The generated `store` stays reachable for anything not wrapped here.
/// Releasing the last reference to this object (and to `store`) closes the
/// store; open one `Gridwork` per account and share it.
public final class Gridwork: Sendable {
    public let store: GridworkStore

    /// Where the quick calls run. Concurrent like Kotlin's `Dispatchers.IO`:
    /// the store is thread-safe and reads use their own connection, so a
    /// read need not queue behind a write. Never the main thread: a
    /// database call may take milliseconds, and the first one after a
    /// long sleep longer.
    private let queue = DispatchQueue(label: "app.gridwork.quick", qos: .userInitiated, attributes: .concurrent)

    private init(store: GridworkStore) {
        self.store = store
    }

    /// Opens (or creates) one account's encrypted store.
    public static func open(config: StoreConfig) async throws -> Gridwork {
        let store = try await openStore(config: config)
        return Gridwork(store: store)
    }

    /// Runs a quick synchronous core call off the caller's thread.
    private func quick<T: Sendable>(_ call: @escaping @Sendable (GridworkStore) throws -> T) async throws -> T {
        let store = store
        return try await withCheckedThrowingContinuation { continuation in
            queue.async {
                continuation.resume(with: Result { try call(store) })
            }
        }
    }

    // MARK: store

    /// What happened when the store was opened (kept in memory: no wait).
    public var openReport: OpenReport { store.openReport() }
    public var accountId: String { store.accountId() }

    // MARK: context and reference data

    public func setDeviceLocation(_ location: GeoPoint?) async throws {
        try await quick { try $0.setDeviceLocation(location: location) }
    }

    public func categories() async throws -> [Category] {
        try await quick { try $0.categories() }
    }

    public func grids() async throws -> [Grid] {
        try await quick { try $0.grids() }
    }

    /// Imports grids from a GeoJSON FeatureCollection (all or nothing); returns how many.
    public func importGridsGeojson(_ geojson: String) async throws -> Int {
        let imported = try await store.importGridsGeojson(geojson: geojson)
        return Int(imported)
    }

    public func locateGrid(_ location: GeoPoint) async throws -> String? {
        try await quick { try $0.locateGrid(location: location) }
    }

    /// Removes photo files no report references (after a crash); returns how many.
    public func sweepOrphanFiles() async throws -> Int {
        let removed = try await store.sweepOrphanFiles()
        return Int(clamping: removed)
    }

    /// Takes over `source`'s unsent work (the store used before the first
    /// sign-in): it goes out with this account's next sync.
    public func adoptUnsentFrom(_ source: Gridwork) async throws -> Adopted {
        try await store.adoptUnsentFrom(source: source.store)
    }

    // MARK: capture

    public func createDraft(_ fields: DraftFields) async throws -> Incident {
        try await quick { try $0.createDraft(fields: fields) }
    }

    public func updateDraft(_ incidentId: String, fields: DraftFields) async throws -> Incident {
        try await quick { try $0.updateDraft(incidentId: incidentId, fields: fields) }
    }

    /// Copies the file into the store (the caller may delete its own copy
    /// afterwards). Cancelling the caller does not stop the copy: the photo
    /// is attached or not, never half.
    public func attachPhoto(_ incidentId: String, sourcePath: String) async throws -> Photo {
        try await store.attachPhoto(incidentId: incidentId, sourcePath: sourcePath)
    }

    public func removePhoto(_ incidentId: String, photoId: String) async throws {
        try await quick { try $0.removePhoto(incidentId: incidentId, photoId: photoId) }
    }

    /// Submits a draft: it is queued for the server in the same commit.
    public func submit(_ incidentId: String) async throws -> Incident {
        try await quick { try $0.submit(incidentId: incidentId) }
    }

    public func discardDraft(_ incidentId: String) async throws {
        try await quick { try $0.discardDraft(incidentId: incidentId) }
    }

    // MARK: reads (a reader connection: never behind a running sync)

    public func listIncidents(_ filter: IncidentFilter = IncidentFilter()) async throws -> [Incident] {
        try await quick { try $0.listIncidents(filter: filter) }
    }

    /// An incident with its photos, timeline (audit entries) and sync state.
    public func incident(_ incidentId: String) async throws -> IncidentDetail {
        try await quick { try $0.getIncident(incidentId: incidentId) }
    }

    public func similarPhotos(_ photoId: String, maxDistance: UInt32 = 10) async throws -> [SimilarPhoto] {
        try await quick { try $0.similarPhotos(photoId: photoId, maxDistance: maxDistance) }
    }

    /// A file path of the photo at `rendition`, made on first use.
    public func photoRendition(_ photoId: String, rendition: Rendition) async throws -> String {
        try await store.photoRendition(photoId: photoId, rendition: rendition)
    }

    /// Check the hash-chained audit trail (归档留痕); `brokenAt` names an entry edited in the database file.
    public func verifyAuditTrail() async throws -> TrailCheck {
        try await store.verifyAuditTrail()
    }

    /// A case's photo (any device's) as a file to show, fetched and kept when needed.
    public func casePhotoFile(_ sha256: String, size: PhotoSize) async throws -> String {
        try await store.casePhotoFile(sha256: sha256, size: size)
    }

    // MARK: tasks and workflow steps (checked offline, queued, shown in their new state at once)

    /// A grid's or a person's figures (统计) for a period, from the cases this device holds.
    public func stats(_ query: StatsQuery) async throws -> Stats {
        try await quick { try $0.stats(query: query) }
    }

    /// A new draft correcting the user's own rejected report, linked to it.
    public func resubmit(_ rejectedId: String) async throws -> Incident {
        try await quick { try $0.resubmit(rejectedId: rejectedId) }
    }

    /// The signed-in user's tasks (待办), soonest deadline first.
    public func tasks(_ filter: TaskFilter = TaskFilter()) async throws -> [CaseTask] {
        try await quick { try $0.tasks(filter: filter) }
    }

    /// Sign, start, handle, hand back, close with a rating, or reopen; with photo files.
    public func takeStep(_ incidentId: String, step: StepInput) async throws -> Incident {
        try await store.takeStep(incidentId: incidentId, step: step)
    }

    // MARK: session

    /// Signs in. Plain `http://` only to loopback unless `allowInsecureHttp`.
    public func login(serverUrl: String, username: String, password: String, allowInsecureHttp: Bool = false) async throws -> UserInfo {
        try await store.login(serverUrl: serverUrl, username: username, password: password, allowInsecureHttp: allowInsecureHttp)
    }

    /// Forgets the session; unsent work stays queued for the next sign-in of the same account.
    public func logout() async throws {
        try await store.logout()
    }

    // MARK: leaving the phone clean (a handed-back or lost phone)

    /// An administrator revoked this device: it no longer signs in or syncs. Export, then `wipe()`.
    public func deviceRevoked() async throws -> Bool {
        try await quick { try $0.deviceRevoked() }
    }

    public func unsentWork() async throws -> UnsentWork {
        try await quick { try $0.unsentWork() }
    }

    /// Writes the unsent work (unsent.json and photos, plain files) into a new folder inside `dir`.
    public func exportUnsent(dir: String) async throws -> ExportedWork {
        try await store.exportUnsent(dir: dir)
    }

    /// Signs out and removes this account's data from the device. Throws
    /// `GridworkError.UnsentWork` while anything unsent is neither synced nor
    /// exported; afterwards this store is empty: release it and open a new one.
    public func wipe() async throws {
        try await store.wipe()
    }

    public func sessionUser() async throws -> UserInfo? {
        try await quick { try $0.sessionUser() }
    }

    // MARK: sync

    /// Connectivity from the platform (`metered`: cellular or Low Data Mode). Never waits behind a sync.
    public func setNetwork(online: Bool, metered: Bool) {
        store.setNetwork(online: online, metered: metered)
    }

    public func setMeteredPolicy(_ policy: MeteredPolicy) {
        store.setMeteredPolicy(policy: policy)
    }

    /// One sync run of at most `budget` seconds.
    ///
    /// Cancelling the calling task stops the run at its next request
    /// boundary (every step is transactional; the next run finishes the
    /// work), and the stopped run still returns its report. The cancel goes
    /// through `cancelSync()`: unlike Kotlin's, the generated Swift async
    /// call does not give up on the Rust future when its task is cancelled,
    /// it waits for it to finish. A cancel that comes after the Rust future
    /// first ran but before the run reached the engine still stops it (the
    /// export takes a sync ticket first); a task already cancelled does not
    /// start a run at all.
    public func sync(trigger: SyncTrigger, budget: TimeInterval) async throws -> SyncReport {
        try Task.checkCancellation()
        let store = store
        let budgetMs = Self.wholeMilliseconds(budget)
        return try await withTaskCancellationHandler {
            try await store.sync(trigger: trigger, budgetMs: budgetMs)
        } onCancel: {
            store.cancelSync()
        }
    }

    /// Stops a running sync at its next request boundary.
    public func cancelSync() {
        store.cancelSync()
    }

    /// Whether a sync is running and how the last one ended (no wait).
    public var syncStatus: SyncStatus { store.syncStatus() }

    // MARK: outbox screen

    public func outboxSummary() async throws -> OutboxSummary {
        try await quick { try $0.outboxSummary() }
    }

    /// Every operation not yet acknowledged, in queue order.
    public func outboxItems() async throws -> [OutboxItem] {
        try await quick { try $0.outboxItems() }
    }

    /// Tries a parked operation again (after the user fixed the cause).
    public func retryParked(_ opId: String) async throws {
        try await quick { try $0.retryParked(opId: opId) }
    }

    // MARK: observers as streams

    public func outbox() -> AsyncStream<OutboxSummary> {
        let store = store
        return Self.stream { store.observeOutbox(observer: OutboxForwarder($0)) }
    }

    public func incidents(_ filter: IncidentFilter = IncidentFilter()) -> AsyncStream<[Incident]> {
        let store = store
        return Self.stream { store.observeIncidents(filter: filter, observer: IncidentsForwarder($0)) }
    }

    public func syncStatusStream() -> AsyncStream<SyncStatus> {
        let store = store
        return Self.stream { store.observeSync(observer: SyncForwarder($0)) }
    }

    public func session() -> AsyncStream<SessionState> {
        let store = store
        return Self.stream { store.observeSession(observer: SessionForwarder($0)) }
    }

    public func referenceData() -> AsyncStream<ReferenceData> {
        let store = store
        return Self.stream { store.observeReferenceData(observer: ReferenceDataForwarder($0)) }
    }

    /// A stream over one core observer. The core delivers on its dispatch
    /// thread and never blocks on us: each value is a complete snapshot, so
    /// a slow consumer only needs the newest one (as Kotlin's DROP_OLDEST).
    private static func stream<T: Sendable>(_ subscribe: (AsyncStream<T>.Continuation) -> Subscription) -> AsyncStream<T> {
        AsyncStream(bufferingPolicy: .bufferingNewest(1)) { continuation in
            let subscription = subscribe(continuation)
            // Holding the subscription here keeps it alive as long as the
            // stream; ending the stream stops the callbacks.
            continuation.onTermination = { _ in
                subscription.cancel()
            }
        }
    }

    /// Seconds to the core's whole milliseconds; negative or NaN is 0 (as Kotlin's coerceAtLeast(0)).
    private static func wholeMilliseconds(_ seconds: TimeInterval) -> UInt64 {
        let milliseconds = seconds * 1000
        if !(milliseconds > 0) { return 0 }
        if milliseconds >= Double(UInt64.max) { return UInt64.max }
        return UInt64(milliseconds)
    }
}

// The generated observer protocols are class-bound and Sendable; each
// forwarder only hands the value to its stream (yield is thread-safe).

private final class OutboxForwarder: OutboxObserver {
    private let continuation: AsyncStream<OutboxSummary>.Continuation
    init(_ continuation: AsyncStream<OutboxSummary>.Continuation) { self.continuation = continuation }
    func onOutbox(summary: OutboxSummary) { continuation.yield(summary) }
}

private final class IncidentsForwarder: IncidentsObserver {
    private let continuation: AsyncStream<[Incident]>.Continuation
    init(_ continuation: AsyncStream<[Incident]>.Continuation) { self.continuation = continuation }
    func onIncidents(incidents: [Incident]) { continuation.yield(incidents) }
}

private final class SyncForwarder: SyncObserver {
    private let continuation: AsyncStream<SyncStatus>.Continuation
    init(_ continuation: AsyncStream<SyncStatus>.Continuation) { self.continuation = continuation }
    func onSync(status: SyncStatus) { continuation.yield(status) }
}

private final class SessionForwarder: SessionObserver {
    private let continuation: AsyncStream<SessionState>.Continuation
    init(_ continuation: AsyncStream<SessionState>.Continuation) { self.continuation = continuation }
    func onSession(session: SessionState) { continuation.yield(session) }
}

private final class ReferenceDataForwarder: ReferenceDataObserver {
    private let continuation: AsyncStream<ReferenceData>.Continuation
    init(_ continuation: AsyncStream<ReferenceData>.Continuation) { self.continuation = continuation }
    func onReferenceData(categories: [Category], grids: [Grid]) {
        continuation.yield(ReferenceData(categories: categories, grids: grids))
    }
}

// Every case carries `code` and `detail`, but the generated enum only
// reaches them through its case; this is that switch, written once rather
// than in every screen that shows an error or switches on its code.
extension GridworkError {
    /// The core's stable machine code (docs/bindings.md), whatever the case.
    public var code: String {
        switch self {
        case .WrongKey(let code, _), .StorageFull(let code, _), .InvalidInput(let code, _, _), .NotFound(let code, _),
             .InvalidState(let code, _), .AccountMismatch(let code, _), .PhotoRefused(let code, _), .NotSignedIn(let code, _),
             .AuthFailed(let code, _), .DeviceRevoked(let code, _), .UnsentWork(let code, _, _, _),
             .Network(let code, _), .ServerRefused(let code, _, _), .Storage(let code, _),
             .Internal(let code, _):
            return code
        }
    }

    /// What went wrong, in English, without personal data (for logs and bug reports).
    public var detail: String {
        switch self {
        case .WrongKey(_, let detail), .StorageFull(_, let detail), .InvalidInput(_, let detail, _), .NotFound(_, let detail),
             .InvalidState(_, let detail), .AccountMismatch(_, let detail), .PhotoRefused(_, let detail),
             .NotSignedIn(_, let detail), .AuthFailed(_, let detail), .Network(_, let detail),
             .ServerRefused(_, let detail, _), .Storage(_, let detail), .Internal(_, let detail):
            return detail
        }
    }
}
