import BackgroundTasks
import Foundation
import Network

/// Sync while the app is not in front, through `BGTaskScheduler`: one
/// `BGProcessingTask` (network required) runs one sync of at most `budget`,
/// then asks for the next run as `SyncPlan` decides, as the Android
/// `SyncWorker` does. iOS has no periodic work like WorkManager's, so the
/// 15-minute safety net is a request too: after an idle plan or a failed
/// run the next run is asked for `safetyNet` later. There is one pending
/// request at most (a new one replaces it).
///
/// Setup:
/// - Info.plist: list `identifier` under `BGTaskSchedulerPermittedIdentifiers`
///   and add `processing` to `UIBackgroundModes` (Signing & Capabilities,
///   Background Modes, "Background processing"). Without both, `register()`
///   returns false and `schedule` throws.
/// - Call `register()` before the app finishes launching
///   (`application(_:didFinishLaunchingWithOptions:)` or the SwiftUI `App`'s
///   `init`); the system may launch the app in the background just to run
///   the task, with no window.
/// - Call `schedule()` once at start and after signing in, and again when
///   work is queued (after a submit). After a run the handler asks for the
///   next one itself; after `onSignInNeeded` nothing is asked for until
///   `schedule()` is called again.
///
/// iOS decides when a processing task actually runs (often when the phone
/// is idle, sometimes only at night on a charger), so `earliestBeginDate`
/// is a lower bound. The foreground syncs (after a capture, when the app
/// comes forward, when the network returns) do most of the work.
///
/// Large photos and suspension: the core uploads photos in resumable
/// chunks, so a run that is stopped (the budget ends, the task expires, the
/// app is suspended or killed) loses at most the chunk in flight and the
/// next run, foreground or background, resumes where it stopped. Handing
/// uploads over to a background `URLSession` (which the system continues
/// while the app is suspended) is not done: the core's transport is its
/// own HTTP client in Rust, and such a hand-off needs the core to export
/// each chunk as a request for the shell. Future work.
public final class BackgroundSync: Sendable {
    public let identifier: String
    private let budget: TimeInterval
    private let safetyNet: TimeInterval
    private let gridwork: @Sendable () async throws -> Gridwork
    private let onSignInNeeded: @Sendable () -> Void
    private let onDeviceRevoked: @Sendable () -> Void

    /// - Parameters:
    ///   - identifier: the task identifier listed in Info.plist.
    ///   - budget: the most one run may take, in seconds. A processing task
    ///     usually gets minutes; when iOS ends it earlier the run is
    ///     cancelled at its next request boundary.
    ///   - safetyNet: when to run after nothing was due or a run failed, in
    ///     seconds (Android's periodic run: 15 minutes).
    ///   - gridwork: the app's one open store of the signed-in account,
    ///     opened on demand (the app may have been launched for this task
    ///     alone), with the user's metered policy applied (it lives in
    ///     memory too). Must return the instance the app's screens use,
    ///     never a second one: two stores on one database would each run a sync.
    ///   - onSignInNeeded: the session ended; tell the user (a local
    ///     notification, say). Nothing was dropped.
    ///   - onDeviceRevoked: the server revoked this device; open the
    ///     export-and-wipe screen. Nothing more is scheduled.
    public init(
        identifier: String,
        budget: TimeInterval,
        safetyNet: TimeInterval = 15 * 60,
        gridwork: @escaping @Sendable () async throws -> Gridwork,
        onSignInNeeded: @escaping @Sendable () -> Void,
        onDeviceRevoked: @escaping @Sendable () -> Void = {}
    ) {
        self.identifier = identifier
        self.budget = budget
        self.safetyNet = safetyNet
        self.gridwork = gridwork
        self.onSignInNeeded = onSignInNeeded
        self.onDeviceRevoked = onDeviceRevoked
    }

    /// Registers the launch handler. False when the identifier is not permitted in Info.plist.
    @discardableResult
    public func register() -> Bool {
        BGTaskScheduler.shared.register(forTaskWithIdentifier: identifier, using: nil) { task in
            self.run(task)
        }
    }

    /// Asks for a run no earlier than `delay` seconds from now; replaces a
    /// request not yet run. Throws when background tasks are not allowed
    /// (Info.plist, Background App Refresh switched off, the simulator).
    public func schedule(after delay: TimeInterval = 0) throws {
        let request = BGProcessingTaskRequest(identifier: identifier)
        request.requiresNetworkConnectivity = true
        request.requiresExternalPower = false
        request.earliestBeginDate = Date(timeIntervalSinceNow: delay)
        try BGTaskScheduler.shared.submit(request)
    }

    /// Withdraws the pending request (sign-out; before switching accounts).
    public func cancel() {
        BGTaskScheduler.shared.cancel(taskRequestWithIdentifier: identifier)
    }

    private func run(_ task: BGTask) {
        let completion = Completion(task)
        let work = Task {
            do {
                let gridwork = try await self.gridwork()
                // The network state lives in memory: a process launched for
                // this task starts as "online, unmetered" whatever the link,
                // and the metered policy would never apply.
                let network = await Self.currentNetwork()
                gridwork.setNetwork(online: network.online, metered: network.metered)
                let report = try await gridwork.sync(trigger: .timerFired, budget: self.budget)
                switch SyncPlan.after(report, nowMs: Self.deviceNowMs()) {
                case .idle:
                    self.ask(after: self.safetyNet)
                case .runAgain(let delayMs):
                    self.ask(after: TimeInterval(delayMs) / 1000)
                case .signInNeeded:
                    self.onSignInNeeded()
                case .deviceRevoked:
                    self.onDeviceRevoked()
                }
                completion.finish(success: true)
            } catch is CancellationError {
                // Expired before the run began: the expiry asked for the next
                // run and completed the task (this finish is then a no-op).
                completion.finish(success: false)
            } catch {
                // The store did not open (key, storage) or the run failed as
                // a whole: as on Android, no retry of our own (it would
                // compete with the engine's backoff); the safety net runs later.
                self.ask(after: self.safetyNet)
                completion.finish(success: false)
            }
        }
        // Expiry cancels the run (it stops at its next request boundary)
        // and completes the task now rather than when the run returns: the
        // boundary may be one chunk upload away on a slow link, and iOS ends
        // apps that overrun. A run that returns later still asks for its own
        // next run.
        task.expirationHandler = {
            work.cancel()
            self.ask(after: TimeInterval(SyncPlan.minDelayMs) / 1000)
            completion.finish(success: false)
        }
    }

    /// Not being able to ask (Background App Refresh off) is not worth
    /// failing a run for: the next foreground sync covers it.
    private func ask(after delay: TimeInterval) {
        try? schedule(after: delay)
    }

    /// Whether the system has a usable path now, and whether it is metered
    /// (cellular or hotspot, or Low Data Mode). NWPathMonitor reports the
    /// current path right after it starts.
    private static func currentNetwork() async -> (online: Bool, metered: Bool) {
        let monitor = NWPathMonitor()
        let once = Once()
        let network: (online: Bool, metered: Bool) = await withCheckedContinuation { continuation in
            monitor.pathUpdateHandler = { path in
                // Resuming twice would crash; a second update may already be queued.
                if once.claim() {
                    continuation.resume(returning: (path.status == .satisfied, path.isExpensive || path.isConstrained))
                }
            }
            monitor.start(queue: DispatchQueue(label: "app.gridwork.network"))
        }
        monitor.cancel()
        return network
    }

    private static func deviceNowMs() -> Int64 {
        Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
    }
}

/// True for the first caller only, on any thread.
private final class Once: @unchecked Sendable {
    private let lock = NSLock()
    private var claimed = false

    func claim() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if claimed {
            return false
        }
        claimed = true
        return true
    }
}

/// Completes a background task once, from the run or from its expiry,
/// whichever comes first. `BGTask` is not marked Sendable, but its methods
/// may be called from any thread.
private final class Completion: @unchecked Sendable {
    private let task: BGTask
    private let once = Once()

    init(_ task: BGTask) {
        self.task = task
    }

    func finish(success: Bool) {
        if once.claim() {
            task.setTaskCompleted(success: success)
        }
    }
}
