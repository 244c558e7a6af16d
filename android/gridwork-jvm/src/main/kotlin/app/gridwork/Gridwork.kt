package app.gridwork

import app.gridwork.ffi.Adopted
import app.gridwork.ffi.CaseTask
import app.gridwork.ffi.Category
import app.gridwork.ffi.DraftFields
import app.gridwork.ffi.ExportedWork
import app.gridwork.ffi.GeoPoint
import app.gridwork.ffi.Grid
import app.gridwork.ffi.GridworkException
import app.gridwork.ffi.GridworkStore
import app.gridwork.ffi.Incident
import app.gridwork.ffi.IncidentDetail
import app.gridwork.ffi.IncidentFilter
import app.gridwork.ffi.IncidentsObserver
import app.gridwork.ffi.MeteredPolicy
import app.gridwork.ffi.OpenReport
import app.gridwork.ffi.OutboxItem
import app.gridwork.ffi.OutboxObserver
import app.gridwork.ffi.OutboxSummary
import app.gridwork.ffi.Photo
import app.gridwork.ffi.PhotoRole
import app.gridwork.ffi.PhotoSize
import app.gridwork.ffi.ReferenceDataObserver
import app.gridwork.ffi.Rendition
import app.gridwork.ffi.SessionObserver
import app.gridwork.ffi.SessionState
import app.gridwork.ffi.SimilarPhoto
import app.gridwork.ffi.Stats
import app.gridwork.ffi.StatsQuery
import app.gridwork.ffi.StepInput
import app.gridwork.ffi.StoreConfig
import app.gridwork.ffi.Subscription
import app.gridwork.ffi.SyncObserver
import app.gridwork.ffi.TrailCheck
import app.gridwork.ffi.SyncReport
import app.gridwork.ffi.SyncStatus
import app.gridwork.ffi.SyncTrigger
import app.gridwork.ffi.TaskFilter
import app.gridwork.ffi.UnsentWork
import app.gridwork.ffi.UserInfo
import app.gridwork.ffi.openStore
import kotlin.time.Duration
import kotlinx.coroutines.CoroutineDispatcher
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.buffer
import kotlinx.coroutines.flow.callbackFlow
import kotlinx.coroutines.channels.BufferOverflow
import kotlinx.coroutines.withContext

/** The stable machine code of any Gridwork error (each variant carries it). */
val GridworkException.code: String
    get() = when (this) {
        is GridworkException.WrongKey -> code
        is GridworkException.StorageFull -> code
        is GridworkException.InvalidInput -> code
        is GridworkException.NotFound -> code
        is GridworkException.InvalidState -> code
        is GridworkException.AccountMismatch -> code
        is GridworkException.PhotoRefused -> code
        is GridworkException.NotSignedIn -> code
        is GridworkException.AuthFailed -> code
        is GridworkException.DeviceRevoked -> code
        is GridworkException.UnsentWork -> code
        is GridworkException.Network -> code
        is GridworkException.ServerRefused -> code
        is GridworkException.Storage -> code
        is GridworkException.Internal -> code
    }

/** Categories and grids, as the reference-data observer delivers them together. */
data class ReferenceData(val categories: List<Category>, val grids: List<Grid>)

/**
 * The Kotlin API of the Gridwork core for app code. Every call is main-safe:
 * the core's quick synchronous calls (they touch the local database) run on
 * [io], its long ones are suspend functions of their own that run on a core
 * worker thread. Observers are cold [Flow]s: collecting one subscribes (the
 * current value arrives at once), cancelling the collection unsubscribes.
 * Errors are [app.gridwork.ffi.GridworkException]; switch on its subclass,
 * or on `code` for finer cases (docs/bindings.md lists them).
 *
 * The generated [store] stays reachable for anything not wrapped here.
 */
class Gridwork private constructor(
    val store: GridworkStore,
    private val io: CoroutineDispatcher,
) : AutoCloseable {
    companion object {
        /** Opens (or creates) one account's encrypted store. */
        suspend fun open(config: StoreConfig, io: CoroutineDispatcher = Dispatchers.IO): Gridwork =
            Gridwork(openStore(config), io)
    }

    private suspend fun <T> quick(call: GridworkStore.() -> T): T = withContext(io) { store.call() }

    val openReport: OpenReport get() = store.openReport()
    val accountId: String get() = store.accountId()

    // --- context and reference data ---
    suspend fun setDeviceLocation(location: GeoPoint?) = quick { setDeviceLocation(location) }
    suspend fun categories(): List<Category> = quick { categories() }
    suspend fun grids(): List<Grid> = quick { grids() }
    suspend fun importGridsGeojson(geojson: String): Int = store.importGridsGeojson(geojson).toInt()
    suspend fun locateGrid(location: GeoPoint): String? = quick { locateGrid(location) }
    suspend fun sweepOrphanFiles(): Long = store.sweepOrphanFiles().toLong()

    /** Take over [source]'s unsent work (the store used before the first sign-in): it goes out with this account's sync. */
    suspend fun adoptUnsentFrom(source: Gridwork): Adopted = store.adoptUnsentFrom(source.store)

    // --- capture ---
    suspend fun createDraft(fields: DraftFields): Incident = quick { createDraft(fields) }
    suspend fun updateDraft(incidentId: String, fields: DraftFields): Incident = quick { updateDraft(incidentId, fields) }
    /** Copies the file into the store (the caller may delete its own copy afterwards). */
    suspend fun attachPhoto(incidentId: String, sourcePath: String): Photo = store.attachPhoto(incidentId, sourcePath)
    suspend fun removePhoto(incidentId: String, photoId: String) = quick { removePhoto(incidentId, photoId) }
    suspend fun submit(incidentId: String): Incident = quick { submit(incidentId) }
    /** 现场解决: after-photos attached with [attachPhotoAs] `PhotoRole.AFTER`, and what was done. */
    suspend fun attachPhotoAs(incidentId: String, sourcePath: String, role: PhotoRole): Photo = store.attachPhotoAs(incidentId, sourcePath, role)
    suspend fun submitResolved(incidentId: String, note: String): Incident = quick { submitResolved(incidentId, note) }
    /** A new draft correcting the user's own rejected report, linked to it. */
    suspend fun resubmit(rejectedId: String): Incident = quick { resubmit(rejectedId) }
    suspend fun discardDraft(incidentId: String) = quick { discardDraft(incidentId) }

    // --- reads (a reader connection: never behind a running sync) ---
    suspend fun listIncidents(filter: IncidentFilter = IncidentFilter()): List<Incident> = quick { listIncidents(filter) }
    suspend fun incident(incidentId: String): IncidentDetail = quick { getIncident(incidentId) }
    suspend fun similarPhotos(photoId: String, maxDistance: Int = 10): List<SimilarPhoto> =
        quick { similarPhotos(photoId, maxDistance.toUInt()) }
    /** A file path of the photo at [rendition], made on first use. */
    suspend fun photoRendition(photoId: String, rendition: Rendition): String = store.photoRendition(photoId, rendition)

    /** Check the hash-chained audit trail (归档留痕); `brokenAt` names an entry edited in the database file. */
    suspend fun verifyAuditTrail(): TrailCheck = store.verifyAuditTrail()

    /** A case's photo (any device's, by its sha256) as a file to show: fetched and kept when not on the phone. */
    suspend fun casePhotoFile(sha256: String, size: PhotoSize): String = store.casePhotoFile(sha256, size)

    // Tasks (待办) and workflow steps: checked offline, queued, shown in their new state at once.
    suspend fun stats(query: StatsQuery): Stats = quick { stats(query) }
    suspend fun tasks(filter: TaskFilter = TaskFilter()): List<CaseTask> = quick { tasks(filter) }
    suspend fun takeStep(incidentId: String, step: StepInput): Incident = store.takeStep(incidentId, step)

    // --- session ---
    suspend fun login(serverUrl: String, username: String, password: String, allowInsecureHttp: Boolean = false): UserInfo =
        store.login(serverUrl, username, password, allowInsecureHttp)
    suspend fun logout() = store.logout()

    // --- leaving the phone clean (a handed-back or lost phone) ---
    /** An administrator revoked this device: it no longer signs in or syncs. Export, then [wipe]. */
    suspend fun deviceRevoked(): Boolean = quick { deviceRevoked() }
    suspend fun unsentWork(): UnsentWork = quick { unsentWork() }
    /** Writes the unsent work (unsent.json and photos, plain files) into a new folder inside [dir]. */
    suspend fun exportUnsent(dir: String): ExportedWork = store.exportUnsent(dir)
    /**
     * Signs out and removes this account's data from the device. Throws
     * [GridworkException.UnsentWork] while anything unsent is neither synced
     * nor exported; afterwards this store is empty: close it and open a new one.
     */
    suspend fun wipe() = store.wipe()
    suspend fun sessionUser(): UserInfo? = quick { sessionUser() }

    // --- sync ---
    /** Never waits behind a running sync. */
    fun setNetwork(online: Boolean, metered: Boolean) = store.setNetwork(online, metered)
    fun setMeteredPolicy(policy: MeteredPolicy) = store.setMeteredPolicy(policy)
    /**
     * One sync run of at most [budget]. Cancelling the calling coroutine stops
     * the run at its next request boundary; the next run finishes the work.
     */
    suspend fun sync(trigger: SyncTrigger, budget: Duration): SyncReport =
        store.sync(trigger, budget.inWholeMilliseconds.coerceAtLeast(0).toULong())
    fun cancelSync() = store.cancelSync()
    val syncStatus: SyncStatus get() = store.syncStatus()

    // --- outbox screen ---
    suspend fun outboxSummary(): OutboxSummary = quick { outboxSummary() }
    suspend fun outboxItems(): List<OutboxItem> = quick { outboxItems() }
    suspend fun retryParked(opId: String) = quick { retryParked(opId) }

    // --- observers as flows ---
    fun outbox(): Flow<OutboxSummary> = observe { send ->
        store.observeOutbox(object : OutboxObserver {
            override fun onOutbox(summary: OutboxSummary) = send(summary)
        })
    }

    fun incidents(filter: IncidentFilter = IncidentFilter()): Flow<List<Incident>> = observe { send ->
        store.observeIncidents(filter, object : IncidentsObserver {
            override fun onIncidents(incidents: List<Incident>) = send(incidents)
        })
    }

    fun syncStatusFlow(): Flow<SyncStatus> = observe { send ->
        store.observeSync(object : SyncObserver {
            override fun onSync(status: SyncStatus) = send(status)
        })
    }

    fun session(): Flow<SessionState> = observe { send ->
        store.observeSession(object : SessionObserver {
            override fun onSession(session: SessionState) = send(session)
        })
    }

    fun referenceData(): Flow<ReferenceData> = observe { send ->
        store.observeReferenceData(object : ReferenceDataObserver {
            override fun onReferenceData(categories: List<Category>, grids: List<Grid>) = send(ReferenceData(categories, grids))
        })
    }

    /** Releases the store's native handle; flows still collecting get nothing more after it, so cancel them first. */
    override fun close() = store.close()
}

/**
 * A cold flow over one core observer. The core delivers on its dispatch
 * thread and never blocks on us: each value is a complete snapshot, so a
 * slow collector only needs the latest one (DROP_OLDEST keeps it).
 */
private fun <T> observe(subscribe: (send: (T) -> Unit) -> Subscription): Flow<T> =
    callbackFlow {
        val subscription = subscribe { value -> trySend(value) }
        awaitClose { subscription.close() }
    }.buffer(capacity = 1, onBufferOverflow = BufferOverflow.DROP_OLDEST)
