package app.gridwork

import app.gridwork.ffi.DraftFields
import app.gridwork.ffi.Durability
import app.gridwork.ffi.GeoPoint
import app.gridwork.ffi.IncidentFilter
import app.gridwork.ffi.IncidentStatus
import app.gridwork.ffi.LogLevel
import app.gridwork.ffi.LogRecord
import app.gridwork.ffi.LogSink
import app.gridwork.ffi.MeteredPolicy
import app.gridwork.ffi.OperationState
import app.gridwork.ffi.Rendition
import app.gridwork.ffi.Role
import app.gridwork.ffi.StoreConfig
import app.gridwork.ffi.SyncState
import app.gridwork.ffi.SyncTrigger
import app.gridwork.ffi.coreVersion
import app.gridwork.ffi.setLogSink
import java.io.File
import java.util.Collections
import kotlin.time.Duration.Companion.seconds
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.SupervisorJob
import kotlinx.coroutines.cancel
import kotlinx.coroutines.channels.ReceiveChannel
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.produceIn
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.After
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNotNull
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Test

/** Inside G-001 of [TWO_GRIDS]. */
val IN_G001 = GeoPoint(31.23, 121.465, 8.0)

fun storeConfig(dir: File, key: ByteArray, account: String = "worker1@test") =
    StoreConfig(dataDir = dir.path, accountId = account, databaseKey = key, durability = Durability.FULL)

/** A complete report: a leaf of the built-in category table, a location in G-001. */
fun report(description: String, category: String? = "0101") =
    DraftFields(categoryCode = category, description = description, location = IN_G001)

/** Collects flows for one test; cancelled (unsubscribing everything) after it. */
open class FlowScope {
    protected val flows = CoroutineScope(SupervisorJob() + Dispatchers.Default)

    fun <T> Flow<T>.collected(): ReceiveChannel<T> = produceIn(flows)

    /** Receives values until one matches (each value is a full snapshot, so the latest one tells). */
    suspend fun <T> ReceiveChannel<T>.until(what: String, predicate: (T) -> Boolean): T =
        try {
            withTimeout(30.seconds) {
                var value = receive()
                while (!predicate(value)) value = receive()
                value
            }
        } catch (e: kotlinx.coroutines.TimeoutCancellationException) {
            throw AssertionError("no value where $what", e)
        }

    @After
    fun stopFlows() = flows.cancel()
}

class StoreTest : FlowScope() {
    @Test
    fun captureWithPhotosSyncsToARealServerWhileFlowsFollow() = runBlocking {
        TestServer().use { server ->
            val camera = tempDir("gw-camera")
            Gridwork.open(storeConfig(tempDir("gw-device"), randomKey())).use { gw ->
                assertTrue(coreVersion().isNotEmpty())
                assertTrue(gw.openReport.created)
                assertEquals("worker1@test", gw.accountId)

                val outbox = gw.outbox().collected()
                val session = gw.session().collected()
                val syncStatus = gw.syncStatusFlow().collected()
                val reference = gw.referenceData().collected()
                val submitted = gw.incidents(IncidentFilter(statuses = listOf(IncidentStatus.SUBMITTED))).collected()
                assertEquals(0UL, outbox.receive().pending)
                assertNull(session.receive().user)
                assertFalse(syncStatus.receive().running)
                assertTrue(submitted.receive().isEmpty())
                assertTrue("built-in categories", reference.receive().categories.any { it.code == "0101" })

                val user = gw.login(server.url, "worker1", PASSWORD)
                assertEquals(Role.GRID_WORKER, user.role)
                assertEquals(listOf("G-001"), user.grids)
                session.until("signed in as worker1") { it.user?.username == "worker1" && !it.needsLogin }
                assertEquals("worker1", gw.sessionUser()?.username)

                // A draft with three photos, one removed again, then edited and submitted.
                gw.setDeviceLocation(IN_G001)
                val draft = gw.createDraft(report("楼道堆物：三辆自行车堵住消防通道"))
                assertEquals(IncidentStatus.DRAFT, draft.status)
                val sources = (1..3).map { writeJpeg(File(camera, "p$it.jpg"), 1200, 900, seed = it) }
                val photos = sources.map { gw.attachPhoto(draft.id, it.path) }
                assertEquals(listOf(0U, 1U, 2U), photos.map { it.position })
                for ((photo, source) in photos.zip(sources)) {
                    assertEquals(1200U, photo.width)
                    assertEquals(900U, photo.height)
                    assertEquals(source.length(), photo.byteSize.toLong())
                    assertEquals("original is the camera's bytes", sha256Hex(source), sha256Hex(File(photo.originalPath)))
                    assertTrue(File(photo.thumbnailPath).length() in 1 until source.length())
                }
                gw.removePhoto(draft.id, photos[2].id)
                val edited = gw.updateDraft(draft.id, report("楼道堆物：两辆自行车堵住消防通道"))
                assertEquals(2U, edited.photoCount)
                gw.submit(draft.id)
                assertEquals(draft.id, submitted.until("the submitted report listed") { it.size == 1 }.single().id)
                assertTrue(outbox.until("operations queued") { it.pending > 0UL }.photoBytesWaiting > 0UL)

                val before = gw.incident(draft.id)
                assertEquals(listOf(photos[0].id, photos[1].id), before.photos.map { it.id })
                assertTrue(before.syncState is SyncState.Unsent)
                assertTrue(before.audit.isNotEmpty())
                assertEquals(draft.id, gw.listIncidents().single { it.status == IncidentStatus.SUBMITTED }.id)
                assertTrue(gw.outboxItems().all { it.state == OperationState.PENDING })

                // Renditions are real JPEG files no larger than asked.
                val rendition = File(gw.photoRendition(photos[0].id, Rendition.LONG_EDGE1280))
                val image = javax.imageio.ImageIO.read(rendition)
                assertTrue(image.width <= 1280 && image.height <= 1280)

                // The same scene photographed again (re-encoded) is found as similar.
                val again = gw.createDraft(report("同一处堆物"))
                val copy = gw.attachPhoto(again.id, writeJpeg(File(camera, "again.jpg"), 1200, 900, seed = 1, quality = 0.6f).path)
                val similar = gw.similarPhotos(copy.id, maxDistance = 6)
                assertTrue("the first photo is similar: $similar", similar.any { it.photo.id == photos[0].id })
                gw.discardDraft(again.id)
                assertEquals(1, gw.listIncidents().count { it.status != IncidentStatus.DISCARDED })

                // One sync run: everything arrives once, the flows follow.
                gw.setNetwork(online = true, metered = false)
                gw.setMeteredPolicy(MeteredPolicy.EVERYTHING)
                val result = gw.sync(SyncTrigger.OPERATION_QUEUED, 60.seconds)
                assertTrue("$result", result.completed)
                assertEquals(2U, result.photosUploaded)
                assertTrue(result.pushed >= 1U && result.parked == 0U)
                syncStatus.until("the run's report") { !it.running && it.lastReport?.completed == true }
                outbox.until("outbox drained") { it.pending == 0UL && it.inFlight == 0UL && it.photoBytesWaiting == 0UL }
                assertEquals(SyncState.Synced, gw.incident(draft.id).syncState)
                val line = server.incidentLines().single { it.startsWith(draft.id) }
                assertTrue(line, line.endsWith("2/2 arrived"))

                // Reference data came down: grids, and locating a point in them.
                reference.until("grids pulled") { data -> data.grids.any { it.code == "G-001" } }
                assertEquals("G-001", gw.locateGrid(IN_G001))
                assertTrue(gw.grids().any { it.code == "G-002" })
                assertTrue(gw.categories().isNotEmpty())

                gw.logout()
                session.until("signed out") { it.user == null }
                assertNull(gw.sessionUser())
            }
        }
    }

    @Test
    fun gridsImportedFromGeojsonAndOrphanFilesSwept() = runBlocking {
        val dir = tempDir("gw-device")
        Gridwork.open(storeConfig(dir, randomKey())).use { gw ->
            val reference = gw.referenceData().collected()
            reference.receive()
            assertEquals(2, gw.importGridsGeojson(TWO_GRIDS))
            reference.until("imported grids delivered") { data -> data.grids.map { it.code }.containsAll(listOf("G-001", "G-002")) }
            assertEquals("G-002", gw.locateGrid(GeoPoint(31.23, 121.475, null)))
            assertNull(gw.locateGrid(GeoPoint(30.0, 120.0, null)))
            // A draft's grid comes from its location once grids are known.
            assertEquals("G-001", gw.createDraft(report("井盖缺失")).gridCode)

            // A photo file no row refers to (a crash between copy and commit) is swept.
            val originals = dir.walkTopDown().single { it.isDirectory && it.name == "originals" }
            val stray = File(originals, "ab".repeat(32) + ".jpg").apply { writeBytes(ByteArray(100)) }
            assertTrue(gw.sweepOrphanFiles() >= 1)
            assertFalse(stray.exists())
        }
    }

    @Test
    fun workCapturedBeforeSignInMovesToTheAccount() = runBlocking {
        val dir = tempDir("gw-device")
        val key = randomKey()
        val camera = tempDir("gw-camera")
        Gridwork.open(storeConfig(dir, key, account = "local")).use { local ->
            Gridwork.open(storeConfig(dir, key)).use { worker ->
                val draft = local.createDraft(report("公厕外墙开裂"))
                local.attachPhoto(draft.id, writeJpeg(File(camera, "wall.jpg"), 640, 480, seed = 5).path)
                local.submit(draft.id)
                val outbox = worker.outbox().collected()
                assertEquals(0UL, outbox.receive().pending)

                val adopted = worker.adoptUnsentFrom(local)
                assertEquals(1U, adopted.incidents)
                assertEquals(2U, adopted.operations)
                assertEquals(1U, adopted.photos)
                outbox.until("the submit and the upload queued here") { it.pending == 2UL }
                val moved = worker.incident(draft.id)
                assertEquals("worker1@test", moved.incident.reporter)
                assertTrue(File(moved.photos.single().originalPath).exists())
                assertTrue(local.listIncidents().isEmpty())
                assertEquals(0UL, local.outboxSummary().pending)
                assertEquals(0U, worker.adoptUnsentFrom(local).incidents)
            }
        }
    }

    @Test
    fun logRecordsReachTheSinkWithoutPersonalData() = runBlocking {
        val records = Collections.synchronizedList(mutableListOf<LogRecord>())
        setLogSink(object : LogSink {
            override fun log(record: LogRecord) { records.add(record) }
        }, LogLevel.INFO)
        try {
            TestServer().use { server ->
                Gridwork.open(storeConfig(tempDir("gw-device"), randomKey())).use { gw ->
                    gw.login(server.url, "worker1", PASSWORD)
                    gw.submit(gw.createDraft(report("独居老人王秀英家门口电线裸露")).id)
                    gw.sync(SyncTrigger.OPERATION_QUEUED, 30.seconds)
                }
            }
        } finally {
            setLogSink(object : LogSink { override fun log(record: LogRecord) {} }, LogLevel.ERROR)
        }
        val text = records.toList().joinToString("\n") { "${it.level} ${it.target} ${it.message}" }
        assertTrue("a sign-in line: $text", records.any { it.message.contains("signed in") })
        for (secret in listOf("worker1", PASSWORD, "王秀英", "电线")) assertFalse("log holds '$secret'", text.contains(secret))
    }
}

