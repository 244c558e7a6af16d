package app.gridwork.android

import android.content.Context
import android.net.ConnectivityManager
import android.net.NetworkCapabilities
import android.os.Build
import android.util.Log
import androidx.core.app.NotificationChannelCompat
import androidx.core.app.NotificationCompat
import androidx.core.app.NotificationManagerCompat
import androidx.work.Constraints
import androidx.work.CoroutineWorker
import androidx.work.ExistingPeriodicWorkPolicy
import androidx.work.ExistingWorkPolicy
import androidx.work.ForegroundInfo
import androidx.work.NetworkType
import androidx.work.OneTimeWorkRequestBuilder
import androidx.work.OutOfQuotaPolicy
import androidx.work.PeriodicWorkRequestBuilder
import androidx.work.WorkManager
import androidx.work.WorkerParameters
import androidx.work.workDataOf
import app.gridwork.SyncPlan
import app.gridwork.ffi.SyncTrigger
import java.util.concurrent.TimeUnit
import kotlin.coroutines.cancellation.CancellationException
import kotlin.time.Duration.Companion.minutes

/**
 * One sync run under WorkManager. The core's engine owns the policy (what is
 * due, backoff, metered links); this worker only feeds it the network state,
 * runs it within WorkManager's time limit and schedules the next run when
 * the engine asks for one ([SyncPlan]).
 *
 * WorkManager stops a worker by cancelling its coroutine (constraints lost,
 * time limit, quota): that cancels the sync, which the core stops at its
 * next request boundary with nothing half-done; the next run finishes it.
 */
class SyncWorker(context: Context, params: WorkerParameters) : CoroutineWorker(context, params) {

    override suspend fun doWork(): Result {
        val accountId = inputData.getString(KEY_ACCOUNT) ?: return Result.failure()
        val trigger = inputData.getString(KEY_TRIGGER)
            ?.let { name -> SyncTrigger.entries.firstOrNull { it.name == name } }
            ?: SyncTrigger.TIMER_FIRED
        // Under WorkManager's 10-minute limit, so the core ends the run itself
        // rather than being cut off; the system promises expedited work only
        // a few minutes.
        val budget = if (inputData.getBoolean(KEY_EXPEDITED, false)) 2.minutes else 8.minutes

        val report = try {
            val gridwork = GridworkAndroid.open(applicationContext, accountId)
            // The network state lives in memory: a fresh process starts without it.
            val (online, metered) = networkState()
            gridwork.setNetwork(online, metered)
            gridwork.sync(trigger, budget)
        } catch (e: CancellationException) {
            throw e
        } catch (e: Exception) {
            // The store did not open (key, storage) or the run failed as a
            // whole: nothing to schedule from, the next trigger or the periodic
            // run tries again. The message holds codes only, no personal data.
            Log.w(TAG, "sync run failed: ${e.javaClass.simpleName}: ${e.message}")
            return Result.failure()
        }

        when (val plan = SyncPlan.after(report, System.currentTimeMillis())) {
            SyncPlan.Idle -> {}
            is SyncPlan.RunAgain -> runAgain(plan.delayMs, accountId)
            SyncPlan.SignInNeeded -> onSignInNeeded?.invoke(applicationContext, accountId)
            SyncPlan.DeviceRevoked -> onDeviceRevoked?.invoke(applicationContext, accountId)
        }
        // Never Result.retry(): WorkManager's own backoff would compete with
        // the engine's next wake.
        return Result.success()
    }

    /** The engine's next wake, as a delayed run in the one-time chain. */
    private fun runAgain(delayMs: Long, accountId: String) {
        val request = OneTimeWorkRequestBuilder<SyncWorker>()
            .setInitialDelay(delayMs, TimeUnit.MILLISECONDS)
            .setConstraints(connected())
            .setInputData(input(accountId, SyncTrigger.TIMER_FIRED, expedited = false))
            .addTag(NOW)
            .build()
        // From a run in that chain, REPLACE would cancel this very worker:
        // append instead, the new run waits for this one to succeed. From the
        // periodic run, replace whatever delayed run an older plan left.
        val policy = if (NOW in tags) ExistingWorkPolicy.APPEND_OR_REPLACE else ExistingWorkPolicy.REPLACE
        WorkManager.getInstance(applicationContext).enqueueUniqueWork(NOW, policy, request)
    }

    /** Whether the network WorkManager found for us is up, and metered. */
    private fun networkState(): Pair<Boolean, Boolean> {
        val connectivity = applicationContext.getSystemService(ConnectivityManager::class.java) ?: return false to true
        // The network that met the constraint (API 28+), else the default one.
        val current = (if (Build.VERSION.SDK_INT >= 28) this.network else null) ?: connectivity.activeNetwork
        val capabilities = current?.let { connectivity.getNetworkCapabilities(it) } ?: return false to true
        val online = capabilities.hasCapability(NetworkCapabilities.NET_CAPABILITY_INTERNET)
        val metered = !capabilities.hasCapability(NetworkCapabilities.NET_CAPABILITY_NOT_METERED)
        return online to metered
    }

    /** Before Android 12 WorkManager runs expedited work as a foreground service, which needs a notification. */
    override suspend fun getForegroundInfo(): ForegroundInfo =
        foregroundNotification?.invoke(applicationContext) ?: defaultForegroundInfo(applicationContext)

    companion object {
        private const val TAG = "Gridwork"

        /** Unique name of the one-time chain: runs asked for now, then the engine's next wakes. */
        const val NOW = "gridwork-sync-now"

        /** Unique name of the periodic run, the safety net when nothing else triggers a sync. */
        const val PERIODIC = "gridwork-sync-periodic"

        private const val KEY_ACCOUNT = "account"
        private const val KEY_TRIGGER = "trigger"
        private const val KEY_EXPEDITED = "expedited"
        private const val CHANNEL = "gridwork-sync"
        private const val NOTIFICATION_ID = 0x6757

        /**
         * Called when a run finds the session over (refresh refused, or never
         * signed in): show a notification that opens the sign-in screen.
         * Nothing was dropped; unsent work waits for the next login. Set it in
         * Application.onCreate, which also runs before a worker in a new process.
         */
        @Volatile
        var onSignInNeeded: ((context: Context, accountId: String) -> Unit)? = null

        /**
         * Called when the server has revoked this device (a lost phone): sync
         * has stopped for good. Open the screen that exports unsent work and
         * wipes (`Gridwork.exportUnsent`, `Gridwork.wipe`).
         */
        @Volatile
        var onDeviceRevoked: ((context: Context, accountId: String) -> Unit)? = null

        /** The app's own notification for the pre-Android 12 foreground run (text in the user's language). */
        @Volatile
        var foregroundNotification: ((Context) -> ForegroundInfo)? = null

        /**
         * Sync as soon as the network allows: after a report is submitted, on a
         * manual retry. Expedited when the quota allows. Replaces the chain:
         * a delayed run waits no longer, and a running one stops at its next
         * request boundary and the new run continues its work.
         */
        fun enqueueNow(context: Context, accountId: String, trigger: SyncTrigger = SyncTrigger.OPERATION_QUEUED) {
            val request = OneTimeWorkRequestBuilder<SyncWorker>()
                .setExpedited(OutOfQuotaPolicy.RUN_AS_NON_EXPEDITED_WORK_REQUEST)
                .setConstraints(connected())
                .setInputData(input(accountId, trigger, expedited = true))
                .addTag(NOW)
                .build()
            WorkManager.getInstance(context).enqueueUniqueWork(NOW, ExistingWorkPolicy.REPLACE, request)
        }

        /**
         * Every 15 minutes (WorkManager's minimum) while connected. KEEP, so
         * calling it at every start does not push the next run back. After a
         * switch to another account call [cancel] first: KEEP keeps the old
         * account in the existing request.
         */
        fun schedulePeriodic(context: Context, accountId: String) {
            val request = PeriodicWorkRequestBuilder<SyncWorker>(15, TimeUnit.MINUTES)
                .setConstraints(connected())
                .setInputData(input(accountId, SyncTrigger.TIMER_FIRED, expedited = false))
                .build()
            WorkManager.getInstance(context).enqueueUniquePeriodicWork(PERIODIC, ExistingPeriodicWorkPolicy.KEEP, request)
        }

        /** Stops every scheduled run (sign-out, account switch). */
        fun cancel(context: Context) {
            val workManager = WorkManager.getInstance(context)
            workManager.cancelUniqueWork(NOW)
            workManager.cancelUniqueWork(PERIODIC)
        }

        private fun connected() = Constraints.Builder().setRequiredNetworkType(NetworkType.CONNECTED).build()

        private fun input(accountId: String, trigger: SyncTrigger, expedited: Boolean) =
            workDataOf(KEY_ACCOUNT to accountId, KEY_TRIGGER to trigger.name, KEY_EXPEDITED to expedited)

        private fun defaultForegroundInfo(context: Context): ForegroundInfo {
            // The app's label: the one text we have in the user's language.
            val label = context.applicationInfo.loadLabel(context.packageManager)
            NotificationManagerCompat.from(context).createNotificationChannel(
                NotificationChannelCompat.Builder(CHANNEL, NotificationManagerCompat.IMPORTANCE_LOW).setName(label).build(),
            )
            val notification = NotificationCompat.Builder(context, CHANNEL)
                .setSmallIcon(android.R.drawable.stat_notify_sync)
                .setContentTitle(label)
                .setOngoing(true)
                .setSilent(true)
                .build()
            return ForegroundInfo(NOTIFICATION_ID, notification)
        }
    }
}
