package app.gridwork

import app.gridwork.ffi.SyncReport

/**
 * What a background scheduler (WorkManager on Android, BGTaskScheduler on
 * iOS) does after a sync run. The core's engine owns the policy (backoff,
 * budgets, what is due); this only translates its report into the
 * scheduler's terms, so both shells decide the same way.
 */
sealed class SyncPlan {
    /** Nothing is due: wait for the next trigger (a capture, the network coming back, the periodic run). */
    object Idle : SyncPlan()

    /** Work remains: run again after [delayMs] (the engine's next wake, never in the past). */
    data class RunAgain(val delayMs: Long) : SyncPlan()

    /** A person must sign in again; nothing was dropped. Do not retry: tell the user. */
    object SignInNeeded : SyncPlan()

    /**
     * An administrator revoked this device: no sign-in helps. Do not retry:
     * show the export-and-wipe screen (its data is already wiped when
     * nothing was unsent).
     */
    object DeviceRevoked : SyncPlan()

    companion object {
        /** The smallest delay a scheduler is asked for: WorkManager's own minimum backoff. */
        const val MIN_DELAY_MS = 10_000L

        fun after(report: SyncReport, nowMs: Long): SyncPlan = when {
            report.deviceRevoked -> DeviceRevoked
            report.needsLogin -> SignInNeeded
            report.completed && report.nextWakeMs == null -> Idle
            else -> RunAgain(((report.nextWakeMs ?: nowMs) - nowMs).coerceAtLeast(MIN_DELAY_MS))
        }
    }
}
