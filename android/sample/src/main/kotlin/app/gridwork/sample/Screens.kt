package app.gridwork.sample

import android.content.ActivityNotFoundException
import android.graphics.BitmapFactory
import android.text.format.DateFormat
import androidx.activity.compose.BackHandler
import androidx.activity.compose.rememberLauncherForActivityResult
import androidx.compose.foundation.Image
import androidx.compose.foundation.clickable
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.layout.size
import androidx.compose.foundation.lazy.LazyColumn
import androidx.compose.foundation.lazy.LazyRow
import androidx.compose.foundation.lazy.items
import androidx.compose.foundation.text.KeyboardOptions
import androidx.compose.material3.Button
import androidx.compose.material3.CircularProgressIndicator
import androidx.compose.material3.ExperimentalMaterial3Api
import androidx.compose.material3.HorizontalDivider
import androidx.compose.material3.ListItem
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.Scaffold
import androidx.compose.material3.Text
import androidx.compose.material3.TextButton
import androidx.compose.material3.TopAppBar
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.produceState
import androidx.compose.runtime.remember
import androidx.compose.runtime.rememberCoroutineScope
import androidx.compose.runtime.saveable.rememberSaveable
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.graphics.ImageBitmap
import androidx.compose.ui.graphics.asImageBitmap
import androidx.compose.ui.text.input.KeyboardType
import androidx.compose.ui.text.input.PasswordVisualTransformation
import androidx.compose.ui.unit.dp
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import app.gridwork.ffi.OperationState
import app.gridwork.ffi.SyncState
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

@OptIn(ExperimentalMaterial3Api::class)
@Composable
fun GridworkSample(vm: SampleViewModel) {
    val screen by vm.screen.collectAsStateWithLifecycle()
    val error by vm.error.collectAsStateWithLifecycle()
    BackHandler(enabled = screen is Screen.Detail || screen == Screen.Report || screen == Screen.Outbox) {
        vm.show(Screen.Incidents)
    }
    Scaffold(
        topBar = { TopAppBar(title = { Text(title(screen)) }) },
        bottomBar = { if (screen != Screen.SignIn && screen != Screen.Loading) SyncLine(vm) },
    ) { padding ->
        Column(Modifier.padding(padding).padding(horizontal = 16.dp)) {
            error?.let {
                Text(it, color = MaterialTheme.colorScheme.error)
                TextButton(onClick = vm::clearError) { Text("Dismiss") }
            }
            when (val current = screen) {
                Screen.Loading -> CircularProgressIndicator()
                Screen.SignIn -> SignIn(vm)
                Screen.Incidents -> IncidentList(vm)
                is Screen.Detail -> Detail(vm, current.incidentId)
                Screen.Report -> Report(vm)
                Screen.Outbox -> Outbox(vm)
            }
        }
    }
}

private fun title(screen: Screen) = when (screen) {
    Screen.Loading, Screen.SignIn -> "Gridwork"
    Screen.Incidents -> "Reports"
    is Screen.Detail -> "Report"
    Screen.Report -> "New report"
    Screen.Outbox -> "Outbox"
}

private fun time(ms: Long): String = DateFormat.format("yyyy-MM-dd HH:mm", ms).toString()

/** Whether a sync runs, how the last ended, what waits: always on screen. */
@Composable
private fun SyncLine(vm: SampleViewModel) {
    val status by vm.syncStatus.collectAsStateWithLifecycle()
    val session by vm.session.collectAsStateWithLifecycle()
    val outbox by vm.outbox.collectAsStateWithLifecycle()
    val waiting = outbox?.summary?.let { it.pending + it.inFlight + it.parked } ?: 0uL
    val last = status
    val text = when {
        session?.needsLogin == true -> "Signed out by the server: sign in again (nothing is lost)"
        last == null -> ""
        last.running -> "Syncing…"
        last.lastErrorCode != null -> "Last sync failed: ${last.lastErrorCode}"
        last.lastFinishedAtMs != null -> "Synced ${time(last.lastFinishedAtMs)}"
        else -> "Not synced yet"
    } + if (waiting > 0uL) " · $waiting waiting" else ""
    Text(text, Modifier.fillMaxWidth().padding(16.dp), style = MaterialTheme.typography.bodySmall)
}

@Composable
private fun SignIn(vm: SampleViewModel) {
    var server by rememberSaveable { mutableStateOf("https://") }
    var username by rememberSaveable { mutableStateOf("") }
    var password by remember { mutableStateOf("") }
    Column(verticalArrangement = Arrangement.spacedBy(8.dp)) {
        OutlinedTextField(server, { server = it }, Modifier.fillMaxWidth(), label = { Text("Server") },
            keyboardOptions = KeyboardOptions(keyboardType = KeyboardType.Uri))
        OutlinedTextField(username, { username = it }, Modifier.fillMaxWidth(), label = { Text("User name") })
        OutlinedTextField(password, { password = it }, Modifier.fillMaxWidth(), label = { Text("Password") },
            visualTransformation = PasswordVisualTransformation(),
            keyboardOptions = KeyboardOptions(keyboardType = KeyboardType.Password))
        Button(onClick = { vm.signIn(server.trim(), username.trim(), password) }, enabled = username.isNotBlank()) {
            Text("Sign in")
        }
    }
}

@Composable
private fun IncidentList(vm: SampleViewModel) {
    val incidents by vm.incidents.collectAsStateWithLifecycle()
    Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
        Button(onClick = { vm.show(Screen.Report) }) { Text("New report") }
        OutlinedButton(onClick = { vm.show(Screen.Outbox) }) { Text("Outbox") }
        TextButton(onClick = vm::syncNow) { Text("Sync") }
        TextButton(onClick = vm::signOut) { Text("Sign out") }
    }
    LazyColumn {
        items(incidents, key = { it.id }) { incident ->
            ListItem(
                headlineContent = { Text(incident.description.ifBlank { "(no description)" }, maxLines = 2) },
                supportingContent = { Text("${incident.status} · ${time(incident.createdAtMs)} · ${incident.photoCount} photo(s)") },
                modifier = Modifier.clickable { vm.show(Screen.Detail(incident.id)) },
            )
            HorizontalDivider()
        }
    }
}

@Composable
private fun Detail(vm: SampleViewModel, incidentId: String) {
    val detail by remember(incidentId) { vm.detail(incidentId) }.collectAsStateWithLifecycle(null)
    val shown = detail
    if (shown == null) {
        CircularProgressIndicator()
        return
    }
    val sync = when (val state = shown.syncState) {
        SyncState.Synced -> "On the server"
        is SyncState.Unsent -> "${state.pendingOperations} change(s) not sent yet"
        is SyncState.Parked -> "Refused by the server: ${state.message} (${state.code})"
    }
    LazyColumn(verticalArrangement = Arrangement.spacedBy(4.dp)) {
        item {
            Text(shown.incident.description, style = MaterialTheme.typography.titleMedium)
            Text("${shown.incident.status} · ${shown.incident.gridCode ?: "no grid"} · $sync")
            LazyRow(horizontalArrangement = Arrangement.spacedBy(4.dp)) {
                items(shown.photos, key = { it.id }) { photo -> Thumbnail(photo.thumbnailPath) }
            }
            Text("Timeline", style = MaterialTheme.typography.titleSmall, modifier = Modifier.padding(top = 8.dp))
        }
        // The audit trail: who did what, when (append-only in the core).
        items(shown.audit) { entry ->
            Text("${time(entry.atMs)}  ${entry.action} · ${entry.actor}" + (entry.detail?.let { " · $it" } ?: ""))
        }
    }
}

@Composable
private fun Thumbnail(path: String) {
    val bitmap by produceState<ImageBitmap?>(null, path) {
        value = withContext(Dispatchers.IO) { BitmapFactory.decodeFile(path)?.asImageBitmap() }
    }
    bitmap?.let { Image(it, contentDescription = null, modifier = Modifier.size(96.dp)) }
}

@Composable
private fun Report(vm: SampleViewModel) {
    var description by rememberSaveable { mutableStateOf("") }
    val photos by vm.draftPhotos.collectAsStateWithLifecycle()
    val scope = rememberCoroutineScope()
    val takePicture = rememberLauncherForActivityResult(vm.camera.contract) { taken -> vm.onPhotoTaken(taken) }
    Column(verticalArrangement = Arrangement.spacedBy(8.dp)) {
        OutlinedTextField(description, { description = it }, Modifier.fillMaxWidth(), label = { Text("What is wrong here?") }, minLines = 3)
        Text("$photos photo(s)")
        Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
            OutlinedButton(onClick = {
                scope.launch {
                    val uri = vm.newCapture(description) ?: return@launch
                    try {
                        takePicture.launch(uri)
                    } catch (e: ActivityNotFoundException) {
                        vm.onPhotoTaken(false) // deletes the unused file
                    }
                }
            }) { Text("Take photo") }
            Button(onClick = { vm.submit(description) }, enabled = description.isNotBlank()) { Text("Submit") }
        }
    }
}

@Composable
private fun Outbox(vm: SampleViewModel) {
    val outbox by vm.outbox.collectAsStateWithLifecycle()
    val view = outbox ?: return
    val summary = view.summary
    Text("${summary.pending} to send, ${summary.inFlight} sending, ${summary.parked} refused; " +
        "photos waiting: ${summary.photoBytesWaiting / 1024uL} KiB")
    LazyColumn {
        items(view.items, key = { it.opId }) { item ->
            ListItem(
                headlineContent = { Text("${item.kind} · ${item.state}") },
                supportingContent = {
                    Text(item.parkReason?.let { "${it.message} (${it.code})" } ?: item.lastError ?: "attempts: ${item.attempts}")
                },
                // A refused operation waits for the user: retry once the cause is fixed.
                trailingContent = {
                    if (item.state == OperationState.PARKED) TextButton(onClick = { vm.retry(item.opId) }) { Text("Retry") }
                },
            )
            HorizontalDivider()
        }
    }
}
