package app.gridwork.android

import android.content.Context
import android.util.Log
import app.gridwork.Gridwork
import app.gridwork.ffi.Durability
import app.gridwork.ffi.LogLevel
import app.gridwork.ffi.LogRecord
import app.gridwork.ffi.LogSink
import app.gridwork.ffi.StoreConfig
import app.gridwork.ffi.setLogSink
import java.io.File
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.sync.Mutex
import kotlinx.coroutines.sync.withLock
import kotlinx.coroutines.withContext

/**
 * The Gridwork library's start-up on Android, and the one place a store is
 * opened, so the app's screens and [SyncWorker] share one store per account.
 */
object GridworkAndroid {
    private const val LIBRARY = "gridwork_ffi"
    private const val TAG = "Gridwork"

    @Volatile
    private var initialized = false

    private val opening = Mutex()

    /**
     * Open stores by account. One per account per process: a second open of
     * the same database would recover the first one's in-flight operations
     * as if its process had been killed, and run a second sync engine.
     */
    private val stores = HashMap<String, Gridwork>()

    /**
     * Loads the native library, gives the TLS platform verifier the
     * application context and sends the library's log records to Logcat.
     * Call it in Application.onCreate, before anything syncs: without it the
     * verifier cannot reach Android's trust store and https requests fail.
     * Idempotent; [open] calls it too.
     */
    fun init(context: Context, logLevel: LogLevel = LogLevel.INFO) {
        if (initialized) return
        synchronized(this) {
            if (initialized) return
            // JNI finds initNative only in a library loaded with
            // System.loadLibrary; JNA (the generated bindings) later opens the
            // same library by name and gets this same copy.
            System.loadLibrary(LIBRARY)
            // The application context, never an Activity: the verifier keeps a
            // global reference to it for the life of the process.
            initNative(context.applicationContext)
            setLogSink(LogcatSink, logLevel)
            initialized = true
        }
    }

    /** Rust: `Java_app_gridwork_android_GridworkAndroid_initNative` (bindings/src/android.rs). */
    @JvmStatic
    private external fun initNative(context: Context)

    /**
     * The store of [accountId], opened on first use and shared afterwards.
     * Its database key is wrapped by a non-exportable Android Keystore key
     * ([KeystoreKeys]); its data lives in noBackupFilesDir, since a backup
     * restored on another device could not be decrypted there anyway.
     */
    suspend fun open(context: Context, accountId: String, durability: Durability = Durability.FULL): Gridwork {
        val app = context.applicationContext
        init(app)
        return opening.withLock {
            stores[accountId] ?: openStore(app, accountId, durability).also { stores[accountId] = it }
        }
    }

    private suspend fun openStore(app: Context, accountId: String, durability: Durability): Gridwork {
        // Keystore calls and the key file are blocking I/O.
        val key = withContext(Dispatchers.IO) { KeystoreKeys.databaseKeyFile(app).getOrCreate() }
        try {
            val dataDir = File(app.noBackupFilesDir, KeystoreKeys.DIRECTORY).path
            return Gridwork.open(StoreConfig(dataDir = dataDir, accountId = accountId, databaseKey = key, durability = durability))
        } finally {
            // The bindings copied it into the core; no clear copy stays on the heap.
            key.fill(0)
        }
    }

    private object LogcatSink : LogSink {
        override fun log(record: LogRecord) {
            val priority = when (record.level) {
                LogLevel.ERROR -> Log.ERROR
                LogLevel.WARN -> Log.WARN
                LogLevel.INFO -> Log.INFO
                LogLevel.DEBUG -> Log.DEBUG
                LogLevel.TRACE -> Log.VERBOSE
            }
            // The core never logs personal data, so records go out as they are.
            Log.println(priority, TAG, "${record.target}: ${record.message}")
        }
    }
}
