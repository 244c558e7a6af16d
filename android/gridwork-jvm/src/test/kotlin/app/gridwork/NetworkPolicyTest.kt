package app.gridwork

import app.gridwork.ffi.MeteredPolicy
import app.gridwork.ffi.OutboxObserver
import app.gridwork.ffi.OutboxSummary
import app.gridwork.ffi.SyncTrigger
import java.io.File
import java.util.concurrent.atomic.AtomicInteger
import kotlin.time.Duration.Companion.seconds
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.delay
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Test

/** What the shell tells the core about the network, and stopping work it started. */
class NetworkPolicyTest {
    @Test
    fun offlineSendsNothingAndOnlineSendsEverything() = runBlocking {
        TestServer().use { server ->
            Gridwork.open(storeConfig(tempDir("gw-device"), randomKey())).use { gw ->
                gw.login(server.url, "worker1", PASSWORD)
                gw.setNetwork(online = false, metered = false)
                val id = gw.submit(gw.createDraft(report("地下室没有信号")).id).id
                val offline = gw.sync(SyncTrigger.MANUAL_RETRY, 10.seconds)
                assertEquals("$offline", 0U, offline.pushed)
                assertEquals(1UL, gw.outboxSummary().pending)
                assertTrue(server.incidentLines().none { it.startsWith(id) })

                gw.setNetwork(online = true, metered = false)
                val online = gw.sync(SyncTrigger.NETWORK_UP, 30.seconds)
                assertTrue("$online", online.completed && online.pushed >= 1U)
                assertTrue(server.incidentLines().any { it.startsWith(id) })
            }
        }
    }

    @Test
    fun onAMeteredLinkTextOnlyHoldsPhotosUntilWifi() = runBlocking {
        TestServer().use { server ->
            Gridwork.open(storeConfig(tempDir("gw-device"), randomKey())).use { gw ->
                gw.login(server.url, "worker1", PASSWORD)
                gw.setMeteredPolicy(MeteredPolicy.TEXT_ONLY)
                gw.setNetwork(online = true, metered = true)
                val draft = gw.createDraft(report("流量省着用"))
                gw.attachPhoto(draft.id, writeJpeg(File(tempDir("gw-camera"), "m.jpg"), 1024, 768, seed = 2).path)
                gw.submit(draft.id)
                val metered = gw.sync(SyncTrigger.OPERATION_QUEUED, 30.seconds)
                assertEquals("$metered", 0U, metered.photosUploaded)
                assertTrue(server.incidentLines().single { it.startsWith(draft.id) }.endsWith("0/1 arrived"))
                assertTrue(gw.outboxSummary().photoBytesWaiting > 0UL)

                gw.setNetwork(online = true, metered = false)
                val wifi = gw.sync(SyncTrigger.NETWORK_UP, 30.seconds)
                assertEquals("$wifi", 1U, wifi.photosUploaded)
                assertTrue(server.incidentLines().single { it.startsWith(draft.id) }.endsWith("1/1 arrived"))
            }
        }
    }

    @Test
    fun cancelSyncEndsTheRunWhichReportsItDidNotFinish() = runBlocking {
        TestServer().use { server ->
            SlowLink(server.url).use { link ->
                link.slow = false
                Gridwork.open(storeConfig(tempDir("gw-device"), randomKey())).use { gw ->
                    gw.login(link.url, "worker1", PASSWORD)
                    val draft = gw.createDraft(report("取消同步"))
                    gw.attachPhoto(draft.id, writeJpeg(File(tempDir("gw-camera"), "c.jpg"), 2000, 1500, seed = 6, noise = true).path)
                    gw.submit(draft.id)
                    link.bytesPerTick = 2048
                    link.slow = true
                    val run = async(Dispatchers.Default) { gw.sync(SyncTrigger.OPERATION_QUEUED, 120.seconds) }
                    withTimeout(20.seconds) { while (!gw.syncStatus.running) delay(20) }
                    delay(500)
                    gw.cancelSync()
                    val report = withTimeout(30.seconds) { run.await() }
                    assertFalse("$report", report.completed)
                    assertFalse(gw.syncStatus.running)
                    link.slow = false
                    assertTrue(gw.sync(SyncTrigger.MANUAL_RETRY, 60.seconds).completed)
                    assertTrue(server.incidentLines().single { it.startsWith(draft.id) }.endsWith("1/1 arrived"))
                }
            }
        }
    }

    @Test
    fun aCancelledSubscriptionHearsNothingMore() = runBlocking {
        Gridwork.open(storeConfig(tempDir("gw-device"), randomKey())).use { gw ->
            val calls = AtomicInteger()
            val subscription = gw.store.observeOutbox(object : OutboxObserver {
                override fun onOutbox(summary: OutboxSummary) { calls.incrementAndGet() }
            })
            withTimeout(10.seconds) { while (calls.get() == 0) delay(10) }
            gw.submit(gw.createDraft(report("一")).id)
            withTimeout(10.seconds) { while (calls.get() < 2) delay(10) }
            subscription.cancel()
            val heard = calls.get()
            gw.submit(gw.createDraft(report("二")).id)
            delay(500)
            assertEquals(heard, calls.get())
            subscription.close()
        }
    }
}
