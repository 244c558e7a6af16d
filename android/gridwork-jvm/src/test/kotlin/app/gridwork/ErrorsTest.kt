package app.gridwork

import app.gridwork.ffi.DraftFields
import app.gridwork.ffi.GridworkException
import app.gridwork.ffi.SyncState
import app.gridwork.ffi.SyncTrigger
import com.sun.net.httpserver.HttpServer
import java.io.File
import java.net.InetSocketAddress
import java.util.UUID
import kotlin.time.Duration.Companion.seconds
import kotlinx.coroutines.runBlocking
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assume.assumeTrue
import org.junit.Test

/** Runs [block], expecting a [GridworkException] of type [E]; returns it. */
inline fun <reified E : GridworkException> refused(block: () -> Unit): E {
    try {
        block()
    } catch (e: GridworkException) {
        if (e is E) return e
        throw AssertionError("expected ${E::class.simpleName}, got ${e::class.simpleName}: ${e.message}", e)
    }
    throw AssertionError("expected ${E::class.simpleName}, nothing was thrown")
}

/**
 * Every error variant an app branches on, each from a real cause, with its
 * stable code. (NotSignedIn is not raised by any export yet: a sync without a
 * session answers `needsLogin`; Internal means a bug and has no trigger.)
 */
class ErrorsTest {
    @Test
    fun wrongOrMalformedKeyIsWrongKeyAndTheStoreSurvives() = runBlocking {
        val dir = tempDir("gw-device")
        val key = randomKey()
        val id = Gridwork.open(storeConfig(dir, key)).use { gw -> gw.createDraft(report("井盖缺失")).id }
        val wrong: GridworkException = refused<GridworkException.WrongKey> { Gridwork.open(storeConfig(dir, randomKey())) }
        assertEquals("database_wrong_key", wrong.code) // the code of any variant, for a UI's `when`
        assertEquals("database_key_invalid", refused<GridworkException.WrongKey> { Gridwork.open(storeConfig(dir, ByteArray(16))) }.code)
        Gridwork.open(storeConfig(dir, key)).use { gw -> assertEquals("井盖缺失", gw.incident(id).incident.description) }
    }

    @Test
    fun invalidInputNamesItsField() = runBlocking {
        Gridwork.open(storeConfig(tempDir("gw-device"), randomKey())).use { gw ->
            val control = refused<GridworkException.InvalidInput> { gw.createDraft(report("bell\u0007")) }
            assertEquals("text_control_character" to "description", control.code to control.field)
            val long = refused<GridworkException.InvalidInput> { gw.createDraft(report("长".repeat(100_000))) }
            assertEquals("text_too_long" to "description", long.code to long.field)
            val category = refused<GridworkException.InvalidInput> { gw.createDraft(report("x", category = "NOPE")) }
            assertEquals("unknown_category" to "category_code", category.code to category.field)
            val location = refused<GridworkException.InvalidInput> {
                gw.createDraft(DraftFields(description = "x", location = app.gridwork.ffi.GeoPoint(91.0, 0.0, null)))
            }
            assertEquals("invalid_location" to "location", location.code to location.field)
            assertEquals("invalid_id", refused<GridworkException.InvalidInput> { gw.incident("not-a-uuid") }.code)
            assertEquals("invalid_geojson", refused<GridworkException.InvalidInput> { gw.importGridsGeojson("{\"type\":1}") }.code)
            val url = refused<GridworkException.InvalidInput> { gw.login("ftp://example.org", "u", "p") }
            assertEquals("invalid_server_url" to "server_url", url.code to url.field)
            // An incomplete draft cannot be submitted; no field is at fault alone.
            val draft = gw.createDraft(DraftFields(description = "no category yet"))
            val incomplete = refused<GridworkException.InvalidInput> { gw.submit(draft.id) }
            assertEquals("incomplete" to null, incomplete.code to incomplete.field)
        }
    }

    @Test
    fun notFoundAndInvalidState() = runBlocking {
        Gridwork.open(storeConfig(tempDir("gw-device"), randomKey())).use { gw ->
            assertEquals("not_found", refused<GridworkException.NotFound> { gw.incident(UUID.randomUUID().toString()) }.code)
            assertEquals("not_found", refused<GridworkException.NotFound> { gw.retryParked(UUID.randomUUID().toString()) }.code)
            val submitted = gw.submit(gw.createDraft(report("路灯不亮")).id)
            assertEquals("invalid_state", refused<GridworkException.InvalidState> { gw.updateDraft(submitted.id, report("edit")) }.code)
            assertEquals("invalid_state", refused<GridworkException.InvalidState> { gw.discardDraft(submitted.id) }.code)
            assertEquals("路灯不亮", gw.incident(submitted.id).incident.description)
        }
    }

    @Test
    fun photosThatAreNotPhotosAreRefusedAndNothingIsAttached() = runBlocking {
        val camera = tempDir("gw-camera")
        Gridwork.open(storeConfig(tempDir("gw-device"), randomKey())).use { gw ->
            val draft = gw.createDraft(report("垃圾满溢"))
            val text = File(camera, "note.jpg").apply { writeText("not a photo at all, just text") }
            assertEquals("photo_unsupported_format", refused<GridworkException.PhotoRefused> { gw.attachPhoto(draft.id, text.path) }.code)
            val empty = File(camera, "empty.jpg").apply { writeBytes(ByteArray(0)) }
            assertEquals("photo_empty", refused<GridworkException.PhotoRefused> { gw.attachPhoto(draft.id, empty.path) }.code)
            assertEquals("photo_file_not_found", refused<GridworkException.PhotoRefused> { gw.attachPhoto(draft.id, File(camera, "gone.jpg").path) }.code)
            val good = writeJpeg(File(camera, "good.jpg"), 400, 300, seed = 5).readBytes()
            val truncated = File(camera, "cut.jpg").apply { writeBytes(good.copyOf(good.size / 3)) }
            assertEquals("photo_corrupt", refused<GridworkException.PhotoRefused> { gw.attachPhoto(draft.id, truncated.path) }.code)
            assertEquals(0U, gw.incident(draft.id).incident.photoCount)
        }
    }

    @Test
    fun sessionErrorsFromARealServer() = runBlocking {
        TestServer().use { server ->
            val dir = tempDir("gw-device")
            val key = randomKey()
            Gridwork.open(storeConfig(dir, key)).use { gw ->
                assertEquals("auth_failed", refused<GridworkException.AuthFailed> { gw.login(server.url, "worker1", "wrong password") }.code)
                assertNull(gw.sessionUser())
                // Nothing listens on port 1.
                assertEquals("network_unavailable", refused<GridworkException.Network> { gw.login("http://127.0.0.1:1", "worker1", PASSWORD) }.code)
                // A sync with nobody signed in keeps the work and asks for a login.
                gw.submit(gw.createDraft(report("消防通道堵塞")).id)
                val report = gw.sync(SyncTrigger.MANUAL_RETRY, 10.seconds)
                assertTrue("$report", report.needsLogin)
                assertEquals(1UL, gw.outboxSummary().pending)

                // The store belongs to worker1 once signed in: worker2 is refused on it.
                gw.login(server.url, "worker1", PASSWORD)
                gw.logout()
                assertEquals("account_mismatch", refused<GridworkException.AccountMismatch> { gw.login(server.url, "worker2", PASSWORD) }.code)
                assertNull(gw.sessionUser())
            }
        }
    }

    @Test
    fun aServerRefusalCarriesTheServersCode() = runBlocking {
        // Fault injection: a server under maintenance answers every request 503 with its code.
        val stub = HttpServer.create(InetSocketAddress("127.0.0.1", 0), 0)
        stub.createContext("/") { exchange ->
            val body = """{"code":"maintenance","message":"back at 06:00"}""".toByteArray()
            exchange.responseHeaders.add("Content-Type", "application/json")
            exchange.sendResponseHeaders(503, body.size.toLong())
            exchange.responseBody.use { it.write(body) }
        }
        stub.start()
        try {
            Gridwork.open(storeConfig(tempDir("gw-device"), randomKey())).use { gw ->
                val e = refused<GridworkException.ServerRefused> { gw.login("http://127.0.0.1:${stub.address.port}", "worker1", PASSWORD) }
                assertEquals("server_error" to "maintenance", e.code to e.serverCode)
            }
        } finally {
            stub.stop(0)
        }
    }

    @Test
    fun aParkedReportIsRetriedAfterTheServerLearnsItsCategory() = runBlocking {
        TestServer().use { server ->
            val table = File(server.dataDir, "categories.json")
            fun categories(version: Int, vararg codes: String) {
                val entries = codes.joinToString(",") { """{"code":"$it","name_zh":"类别$it"}""" }
                table.writeText("""{"version":$version,"categories":[$entries]}""")
                server.admin("category", "import", table.path)
            }
            categories(2, "0101", "0999")
            Gridwork.open(storeConfig(tempDir("gw-device"), randomKey())).use { gw ->
                gw.login(server.url, "worker1", PASSWORD)
                gw.sync(SyncTrigger.APP_FOREGROUNDED, 30.seconds)
                assertTrue("0999 pulled", gw.categories().any { it.code == "0999" })
                // The command center retires 0999 while this device still offers it.
                categories(3, "0101")
                val draft = gw.submit(gw.createDraft(report("临时类别", category = "0999")).id)
                val first = gw.sync(SyncTrigger.OPERATION_QUEUED, 30.seconds)
                assertEquals("$first", 1U, first.parked)
                val parked = gw.incident(draft.id).syncState
                assertTrue("$parked", parked is SyncState.Parked && parked.code == "unknown_category")
                val item = gw.outboxItems().single { it.parkReason != null }
                assertEquals("unknown_category", item.parkReason?.code)
                assertEquals(1UL, gw.outboxSummary().parked)

                // Restored on the server, the parked report goes out on retry.
                categories(4, "0101", "0999")
                gw.retryParked(item.opId)
                assertEquals(0UL, gw.outboxSummary().parked)
                val second = gw.sync(SyncTrigger.MANUAL_RETRY, 30.seconds)
                assertTrue("$second", second.completed && second.parked == 0U)
                assertEquals(SyncState.Synced, gw.incident(draft.id).syncState)
                assertTrue(server.incidentLines().any { it.startsWith(draft.id) })
            }
        }
    }

    @Test
    fun aFullDiskIsStorageFullAndEarlierWorkSurvives() = runBlocking {
        val mount = tempDir("gw-full")
        val mounted = ProcessBuilder("mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", mount.path).start().waitFor() == 0
        // CI runs as root and must run this; elsewhere it is skipped, saying so.
        assumeTrue("mounting a small tmpfs needs root", mounted || System.getenv("CI") != null)
        assertTrue("tmpfs mounted", mounted)
        try {
            val key = randomKey()
            val dir = File(mount, "device")
            val photo = writeJpeg(File(tempDir("gw-camera"), "big.jpg"), 1600, 1200, seed = 9, noise = true)
            Gridwork.open(storeConfig(dir, key)).use { gw ->
                val kept = gw.submit(gw.createDraft(report("先保存的上报")).id).id
                val draft = gw.createDraft(report("满盘时的上报"))
                fill(File(mount, "filler"))
                val e = refused<GridworkException.StorageFull> { gw.attachPhoto(draft.id, photo.path) }
                assertEquals("storage_full", e.code)
                assertEquals(0U, gw.incident(draft.id).incident.photoCount)
                assertEquals("先保存的上报", gw.incident(kept).incident.description)
                // Space freed: the same photo goes in.
                File(mount, "filler").delete()
                assertEquals(1U, gw.attachPhoto(draft.id, photo.path).position + 1U)
            }
        } finally {
            ProcessBuilder("umount", mount.path).start().waitFor()
        }
    }

    private fun fill(file: File) = file.outputStream().use { out ->
        val chunk = ByteArray(16 * 1024)
        try { while (true) out.write(chunk) } catch (_: java.io.IOException) {}
        val small = ByteArray(256)
        try { while (true) out.write(small) } catch (_: java.io.IOException) {}
    }

    @Test
    fun aStoreFolderThatIsAFileIsAStorageError() = runBlocking {
        val file = File(tempDir("gw-device"), "not-a-folder").apply { writeText("x") }
        val e = refused<GridworkException.Storage> { Gridwork.open(storeConfig(file, randomKey())) }
        assertTrue(e.code, e.code == "io_error" || e.code == "database_error")
        assertFalse("no path in the message", e.detail.contains(file.path))
    }
}
