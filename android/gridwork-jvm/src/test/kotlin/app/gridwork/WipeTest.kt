package app.gridwork

import app.gridwork.ffi.GridworkException
import app.gridwork.ffi.SyncTrigger
import java.io.File
import kotlin.time.Duration.Companion.seconds
import kotlinx.coroutines.runBlocking
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Test

/**
 * A lost phone revoked on a real server: it stops syncing, keeps the report
 * it had not sent until the person exports it, then wipes on request.
 */
class WipeTest {
    /** The device id worker1's phone signed in with, as `device list --json` shows it. */
    private fun deviceOf(server: TestServer, username: String): String {
        val rows = Regex("""\{[^{}]*\}""").findAll(server.admin("device", "list", "--json")).map { it.value }
        val row = rows.first { it.contains("\"username\": \"$username\"") || it.contains("\"username\":\"$username\"") }
        return Regex(""""device_id"\s*:\s*"([^"]+)"""").find(row)!!.groupValues[1]
    }

    @Test
    fun aRevokedPhoneStopsSyncingAndWipesOnlyOnceItsUnsentWorkIsExported() = runBlocking {
        TestServer().use { server ->
            val dir = tempDir("gw-device")
            Gridwork.open(storeConfig(dir, randomKey())).use { gw ->
                gw.login(server.url, "worker1", PASSWORD)
                assertTrue(gw.sync(SyncTrigger.MANUAL_RETRY, 30.seconds).completed)
                assertFalse(gw.deviceRevoked())

                server.admin("device", "revoke", deviceOf(server, "worker1"))
                val unsent = gw.submit(gw.createDraft(report("消防通道堵塞 LOST-PHONE")).id)
                val report = gw.sync(SyncTrigger.OPERATION_QUEUED, 30.seconds)
                assertTrue("$report", report.deviceRevoked)
                assertFalse("no login helps a revoked phone", report.needsLogin)
                assertEquals(SyncPlan.DeviceRevoked, SyncPlan.after(report, System.currentTimeMillis()))
                assertTrue(gw.deviceRevoked())
                assertNull(gw.sessionUser())
                assertEquals("device_revoked", refused<GridworkException.DeviceRevoked> { gw.login(server.url, "worker1", PASSWORD) }.code)

                // Never wiped silently: the report is still here, and a wipe says what would be lost.
                assertEquals(unsent.id, gw.incident(unsent.id).incident.id)
                assertEquals(1UL, gw.unsentWork().operations)
                val refusal = refused<GridworkException.UnsentWork> { gw.wipe() }
                assertEquals("unsent_work" to 1UL, refusal.code to refusal.operations)

                val exported = gw.exportUnsent(tempDir("gw-export").path)
                assertEquals(1UL, exported.operations)
                assertTrue(File(exported.folder, "unsent.json").readText().contains("LOST-PHONE"))
                gw.wipe()
                assertTrue(gw.listIncidents().isEmpty())
                assertEquals("store_wiped", refused<GridworkException.InvalidState> { gw.createDraft(report("after")) }.code)
            }
            val left = dir.walkTopDown().filter { it.isFile && it.name != "gridwork.lock" }.map { it.name }.toList()
            assertEquals("no database or photo file left", emptyList<String>(), left)
        }
    }
}
