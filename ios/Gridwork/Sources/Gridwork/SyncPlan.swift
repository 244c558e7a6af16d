import Foundation

/// What a background scheduler (BGTaskScheduler here, WorkManager on
/// Android) does after a sync run. The core's engine owns the policy
/// (backoff, budgets, what is due); this only translates its report into
/// the scheduler's terms, so both shells decide the same way: the
/// constants and rules are those of the Kotlin `app.gridwork.SyncPlan`.
public enum SyncPlan: Equatable, Sendable {
    /// Nothing is due: wait for the next trigger (a capture, the network coming back, the periodic run).
    case idle
    /// Work remains: run again after `delayMs` (the engine's next wake, never in the past).
    case runAgain(delayMs: Int64)
    /// A person must sign in again; nothing was dropped. Do not retry: tell the user.
    case signInNeeded
    /// An administrator revoked this device: no sign-in helps. Do not retry:
    /// show the export-and-wipe screen (its data is already wiped when nothing was unsent).
    case deviceRevoked

    /// The smallest delay a scheduler is asked for: WorkManager's own minimum backoff.
    public static let minDelayMs: Int64 = 10_000

    /// `nowMs` is device time (Unix ms), as the report's `nextWakeMs`.
    public static func after(_ report: SyncReport, nowMs: Int64) -> SyncPlan {
        if report.deviceRevoked {
            return .deviceRevoked
        }
        if report.needsLogin {
            return .signInNeeded
        }
        if report.completed && report.nextWakeMs == nil {
            return .idle
        }
        // &- wraps like Kotlin's Long instead of trapping; both are Unix ms, so it never does.
        return .runAgain(delayMs: max((report.nextWakeMs ?? nowMs) &- nowMs, minDelayMs))
    }
}
