package app.gridwork.sample

import android.app.Application
import android.content.Context
import android.net.Uri
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.SavedStateHandle
import androidx.lifecycle.viewModelScope
import app.gridwork.Gridwork
import app.gridwork.android.CameraCapture
import app.gridwork.android.GridworkAndroid
import app.gridwork.android.SyncWorker
import app.gridwork.ffi.DraftFields
import app.gridwork.ffi.Incident
import app.gridwork.ffi.IncidentDetail
import app.gridwork.ffi.OutboxItem
import app.gridwork.ffi.OutboxSummary
import app.gridwork.ffi.SessionState
import app.gridwork.ffi.SyncStatus
import app.gridwork.ffi.SyncTrigger
import kotlin.coroutines.cancellation.CancellationException
import kotlinx.coroutines.ExperimentalCoroutinesApi
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.SharingStarted
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.filterNotNull
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.flow.flatMapLatest
import kotlinx.coroutines.flow.flowOf
import kotlinx.coroutines.flow.map
import kotlinx.coroutines.flow.merge
import kotlinx.coroutines.flow.stateIn
import kotlinx.coroutines.launch

sealed interface Screen {
    data object Loading : Screen
    data object SignIn : Screen
    data object Incidents : Screen
    data class Detail(val incidentId: String) : Screen
    data object Report : Screen
    data object Outbox : Screen
}

data class OutboxView(val summary: OutboxSummary, val items: List<OutboxItem>)

/**
 * The sample's one ViewModel: the open store, the screen shown, the draft
 * being written. Everything else is read from the store's flows, which the
 * core refreshes after every change (a sync included).
 */
@OptIn(ExperimentalCoroutinesApi::class)
class SampleViewModel(application: Application, private val saved: SavedStateHandle) : AndroidViewModel(application) {
    private val app = application
    private val prefs = application.getSharedPreferences("sample", Context.MODE_PRIVATE)
    private val store = MutableStateFlow<Gridwork?>(null)
    val camera = CameraCapture(application)

    val screen = MutableStateFlow<Screen>(Screen.Loading)
    val error = MutableStateFlow<String?>(null)
    val draftPhotos = MutableStateFlow(0)

    val incidents: StateFlow<List<Incident>> = store.flatMapLatest { it?.incidents() ?: flowOf(emptyList()) }.shared(emptyList())
    val syncStatus: StateFlow<SyncStatus?> = store.flatMapLatest { it?.syncStatusFlow() ?: flowOf(null) }.shared(null)
    val session: StateFlow<SessionState?> = store.flatMapLatest { it?.session() ?: flowOf(null) }.shared(null)
    val outbox: StateFlow<OutboxView?> = store.flatMapLatest { gw ->
        if (gw == null) flowOf(null) else gw.outbox().map { summary -> OutboxView(summary, gw.outboxItems()) }
    }.shared(null)

    init {
        act {
            // Camera files of a capture that never came back; not while one
            // may still come back (the process was killed behind the camera).
            if (saved.get<String>(KEY_CAPTURE) == null) camera.sweep()
            val account = prefs.getString(KEY_ACCOUNT, null)
            if (account == null) {
                screen.value = Screen.SignIn
                return@act
            }
            val gw = GridworkAndroid.open(app, account)
            store.value = gw
            screen.value = if (gw.sessionUser() != null) Screen.Incidents else Screen.SignIn
            SyncWorker.schedulePeriodic(app, account)
            SyncWorker.enqueueNow(app, account, SyncTrigger.APP_FOREGROUNDED)
        }
    }

    fun show(next: Screen) {
        screen.value = next
    }

    fun clearError() {
        error.value = null
    }

    /** An incident, fresh after each change to incidents or to the outbox (its sync state). */
    fun detail(incidentId: String): Flow<IncidentDetail> = store.filterNotNull().flatMapLatest { gw ->
        merge(gw.incidents(), gw.outbox()).map { gw.incident(incidentId) }
    }

    fun signIn(serverUrl: String, username: String, password: String) = act {
        // One store per person and server: a shared phone keeps each one's
        // unsent work apart (the core refuses another person on a store).
        val account = "$username@${serverUrl.trimEnd('/')}"
        val gw = GridworkAndroid.open(app, account)
        gw.login(serverUrl, username, password)
        if (prefs.getString(KEY_ACCOUNT, null) != account) SyncWorker.cancel(app)
        prefs.edit().putString(KEY_ACCOUNT, account).apply()
        store.value = gw
        SyncWorker.schedulePeriodic(app, account)
        SyncWorker.enqueueNow(app, account, SyncTrigger.APP_FOREGROUNDED)
        screen.value = Screen.Incidents
    }

    fun signOut() = act {
        store.value?.logout()
        SyncWorker.cancel(app)
        screen.value = Screen.SignIn
    }

    fun syncNow() = act { SyncWorker.enqueueNow(app, requireStore().accountId, SyncTrigger.MANUAL_RETRY) }

    fun retry(opId: String) = act {
        val gw = requireStore()
        gw.retryParked(opId)
        SyncWorker.enqueueNow(app, gw.accountId, SyncTrigger.MANUAL_RETRY)
    }

    /** Saves the draft (a photo belongs to one) and returns the URI for the camera. */
    suspend fun newCapture(description: String): Uri? = attempt {
        draftId(requireStore(), description)
        val capture = camera.newCapture()
        saved[KEY_CAPTURE] = capture.path
        capture.uri
    }

    fun onPhotoTaken(taken: Boolean) = act {
        val path = saved.get<String>(KEY_CAPTURE) ?: return@act
        saved.remove<String>(KEY_CAPTURE)
        val draft = saved.get<String>(KEY_DRAFT) ?: return@act
        // After a process death the store may still be opening.
        val gw = store.filterNotNull().first()
        camera.finish(gw, draft, path, taken)
        draftPhotos.value = gw.incident(draft).photos.size
    }

    fun submit(description: String) = act {
        val gw = requireStore()
        gw.submit(draftId(gw, description))
        saved.remove<String>(KEY_DRAFT)
        draftPhotos.value = 0
        SyncWorker.enqueueNow(app, gw.accountId)
        screen.value = Screen.Incidents
    }

    private suspend fun draftId(gw: Gridwork, description: String): String {
        val fields = DraftFields(description = description)
        val id = saved.get<String>(KEY_DRAFT)
        if (id != null) {
            gw.updateDraft(id, fields)
            return id
        }
        return gw.createDraft(fields).id.also { saved[KEY_DRAFT] = it }
    }

    private suspend fun requireStore(): Gridwork = store.filterNotNull().first()

    private fun act(block: suspend () -> Unit) {
        viewModelScope.launch { attempt(block) }
    }

    /** Runs [block]; a failure becomes the error line (the core's code and detail). */
    private suspend fun <T> attempt(block: suspend () -> T): T? = try {
        block()
    } catch (e: CancellationException) {
        throw e
    } catch (e: Exception) {
        error.value = e.message ?: e.javaClass.simpleName
        null
    }

    private fun <T> Flow<T>.shared(initial: T): StateFlow<T> =
        stateIn(viewModelScope, SharingStarted.WhileSubscribed(5_000), initial)

    private companion object {
        const val KEY_ACCOUNT = "account"
        const val KEY_CAPTURE = "capture"
        const val KEY_DRAFT = "draft"
    }
}
