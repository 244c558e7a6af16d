package app.gridwork

import app.gridwork.ffi.SyncTrigger
import java.io.File
import javax.crypto.KeyGenerator
import kotlin.time.Duration.Companion.seconds
import kotlinx.coroutines.runBlocking
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Test

/** The shell-side helpers that do not need a platform SDK. */
class SupportTest {
    private fun aesKey() = KeyGenerator.getInstance("AES").apply { init(256) }.generateKey()

    @Test
    fun databaseKeyIsMadeOnceWrappedAndOpensTheStoreAgain() = runBlocking {
        val dir = tempDir("gw-keys")
        val wrapping = aesKey()
        val file = File(dir, "database.key")
        val key = DatabaseKeyFile(file, wrapping).getOrCreate()
        assertEquals(32, key.size)
        assertFalse("the file does not hold the key in clear", file.readBytes().toList().windowed(32).any { it == key.toList() })
        assertArrayEquals(key, DatabaseKeyFile(file, wrapping).getOrCreate())

        val store = tempDir("gw-device")
        val id = Gridwork.open(storeConfig(store, key)).use { gw -> gw.createDraft(report("钥匙测试")).id }
        Gridwork.open(storeConfig(store, DatabaseKeyFile(file, wrapping).getOrCreate())).use { gw ->
            assertEquals("钥匙测试", gw.incident(id).incident.description)
        }
    }

    @Test
    fun aKeyWhoseRenameWasLostIsPromotedNotReplaced() {
        val dir = tempDir("gw-keys")
        val wrapping = aesKey()
        val file = File(dir, "database.key")
        val key = DatabaseKeyFile(file, wrapping).getOrCreate()
        assertTrue(file.renameTo(File(dir, "database.key.partial")))
        assertArrayEquals(key, DatabaseKeyFile(file, wrapping).getOrCreate())
        assertTrue(file.exists())
        // A partial file torn before its sync never held a key in use: a new key is made.
        File(dir, "other.key.partial").writeBytes(ByteArray(5))
        assertEquals(32, DatabaseKeyFile(File(dir, "other.key"), wrapping).getOrCreate().size)
        assertFalse(File(dir, "other.key.partial").exists())
    }

    @Test
    fun anUnreadableKeyFileIsAnErrorNeverANewKey() {
        val dir = tempDir("gw-keys")
        val file = File(dir, "database.key")
        val original = DatabaseKeyFile(file, aesKey()).getOrCreate()
        val bytes = file.readBytes()
        // Another device's wrapping key (a restored backup), a flipped bit, a cut file.
        try { DatabaseKeyFile(file, aesKey()).getOrCreate(); throw AssertionError("opened with another key") } catch (_: DatabaseKeyUnreadable) {}
        file.writeBytes(bytes.copyOf().also { it[it.size - 1] = (it[it.size - 1].toInt() xor 1).toByte() })
        try { DatabaseKeyFile(file, aesKey()).getOrCreate(); throw AssertionError("opened a tampered file") } catch (_: DatabaseKeyUnreadable) {}
        file.writeBytes(bytes.copyOf(10))
        try { DatabaseKeyFile(file, aesKey()).getOrCreate(); throw AssertionError("opened a cut file") } catch (_: DatabaseKeyUnreadable) {}
        assertEquals("the file is left for support, not overwritten", 10L, file.length())
        assertEquals(32, original.size)
    }

    @Test
    fun cameraFilesAreDeletedOnceAttachedOrRefused() = runBlocking {
        val files = CaptureFiles(tempDir("gw-capture"))
        Gridwork.open(storeConfig(tempDir("gw-device"), randomKey())).use { gw ->
            val draft = gw.createDraft(report("相机交接"))
            val shot = writeJpeg(files.newFile(), 640, 480, seed = 7)
            val photo = files.attach(gw, draft.id, shot)
            assertFalse(shot.exists())
            assertTrue(File(photo.originalPath).exists())
            val junk = files.newFile().apply { writeText("not a jpeg") }
            try { files.attach(gw, draft.id, junk); throw AssertionError("junk attached") } catch (_: app.gridwork.ffi.GridworkException.PhotoRefused) {}
            assertFalse(junk.exists())
            files.newFile().writeBytes(ByteArray(10)) // a capture the app was killed in, or one still being taken
            assertEquals("a fresh capture is left alone", 0, files.sweep())
            assertEquals(1, files.sweep(olderThanMs = 0))
        }
    }

    @Test
    fun syncPlanFollowsRealReports() = runBlocking {
        TestServer().use { server ->
            Gridwork.open(storeConfig(tempDir("gw-device"), randomKey())).use { gw ->
                gw.submit(gw.createDraft(report("计划")).id)
                val signedOut = gw.sync(SyncTrigger.OPERATION_QUEUED, 10.seconds)
                assertEquals(SyncPlan.SignInNeeded, SyncPlan.after(signedOut, System.currentTimeMillis()))

                gw.login(server.url, "worker1", PASSWORD)
                val done = gw.sync(SyncTrigger.MANUAL_RETRY, 30.seconds)
                assertTrue("$done", done.completed)
                val plan = SyncPlan.after(done, System.currentTimeMillis())
                assertTrue("$plan", plan == SyncPlan.Idle || (plan is SyncPlan.RunAgain && plan.delayMs >= SyncPlan.MIN_DELAY_MS))

                // A server that went away: work is left, and the plan is to run again later.
                gw.submit(gw.createDraft(report("服务器停了")).id)
                server.close()
                val failed = gw.sync(SyncTrigger.OPERATION_QUEUED, 10.seconds)
                assertFalse("$failed", failed.completed)
                val again = SyncPlan.after(failed, System.currentTimeMillis())
                assertTrue("$again", again is SyncPlan.RunAgain && again.delayMs >= SyncPlan.MIN_DELAY_MS)
            }
        }
    }
}
