package app.gridwork.sample

import android.Manifest
import android.app.Application
import android.app.PendingIntent
import android.content.Context
import android.content.Intent
import android.content.pm.PackageManager
import android.os.Build
import androidx.core.app.NotificationChannelCompat
import androidx.core.app.NotificationCompat
import androidx.core.app.NotificationManagerCompat
import androidx.core.content.ContextCompat
import app.gridwork.android.GridworkAndroid
import app.gridwork.android.SyncWorker

class SampleApplication : Application() {
    override fun onCreate() {
        super.onCreate()
        // First, before any store opens or syncs: loads the library and lets
        // the TLS verifier reach Android's trust store. Application.onCreate
        // also runs before a SyncWorker started in a fresh process.
        GridworkAndroid.init(this)
        SyncWorker.onSignInNeeded = { context, _ -> notifySignInNeeded(context) }
    }

    private fun notifySignInNeeded(context: Context) {
        if (Build.VERSION.SDK_INT >= 33 &&
            ContextCompat.checkSelfPermission(context, Manifest.permission.POST_NOTIFICATIONS) != PackageManager.PERMISSION_GRANTED
        ) {
            return // the app shows it on its sync line when opened
        }
        val notifications = NotificationManagerCompat.from(context)
        notifications.createNotificationChannel(
            NotificationChannelCompat.Builder(CHANNEL, NotificationManagerCompat.IMPORTANCE_DEFAULT).setName("Account").build(),
        )
        val open = PendingIntent.getActivity(
            context, 0, Intent(context, MainActivity::class.java), PendingIntent.FLAG_IMMUTABLE,
        )
        val notification = NotificationCompat.Builder(context, CHANNEL)
            .setSmallIcon(android.R.drawable.stat_notify_error)
            .setContentTitle("Sign in again")
            .setContentText("Your reports wait on this phone until you do.")
            .setContentIntent(open)
            .setAutoCancel(true)
            .build()
        notifications.notify(NOTIFICATION_ID, notification)
    }

    private companion object {
        const val CHANNEL = "account"
        const val NOTIFICATION_ID = 1
    }
}
