package app.gridwork

import app.gridwork.ffi.SyncState
import app.gridwork.ffi.SyncTrigger
import java.io.File
import kotlin.time.Duration.Companion.seconds
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.cancelAndJoin
import kotlinx.coroutines.delay
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Test

/** Sync over a slow link: cancelled in the middle of an upload, and raced by captures. */
class CancelTest {
    private suspend fun Gridwork.awaitSyncRunning() = withTimeout(20.seconds) { while (!syncStatus.running) delay(20) }
    private suspend fun Gridwork.awaitSyncIdle() = withTimeout(60.seconds) { while (syncStatus.running) delay(20) }

    @Test
    fun aSyncCancelledMidUploadStopsAndTheNextOneFinishesTheWork() = runBlocking {
        TestServer().use { server ->
            SlowLink(server.url).use { link ->
                link.slow = false
                Gridwork.open(storeConfig(tempDir("gw-device"), randomKey())).use { gw ->
                    gw.login(link.url, "worker1", PASSWORD)
                    val draft = gw.createDraft(report("墙体开裂"))
                    val photo = writeJpeg(File(tempDir("gw-camera"), "wall.jpg"), 2400, 1800, seed = 3, noise = true, quality = 0.95f)
                    assertTrue("a photo of several chunks", photo.length() > 2_000_000)
                    gw.attachPhoto(draft.id, photo.path)
                    gw.submit(draft.id)

                    // About 400 KB/s: the photo alone takes several seconds.
                    link.bytesPerTick = 4096
                    link.slow = true
                    val sync = launch(Dispatchers.Default) { gw.sync(SyncTrigger.OPERATION_QUEUED, 120.seconds) }
                    gw.awaitSyncRunning()
                    delay(1500)
                    val cancelledAt = System.nanoTime()
                    sync.cancelAndJoin()
                    gw.awaitSyncIdle()
                    val stopMs = (System.nanoTime() - cancelledAt) / 1_000_000
                    println("cancel → idle in $stopMs ms")

                    val waiting = gw.outboxSummary()
                    assertTrue("work is left for the next run: $waiting", waiting.pending + waiting.inFlight > 0UL || waiting.photoBytesWaiting > 0UL)
                    assertFalse("the photo has not all arrived", server.incidentLines().any { it.startsWith(draft.id) && it.endsWith("1/1 arrived") })
                    assertTrue(gw.incident(draft.id).syncState is SyncState.Unsent)

                    link.slow = false
                    val report = gw.sync(SyncTrigger.MANUAL_RETRY, 60.seconds)
                    assertTrue("$report", report.completed)
                    val line = server.incidentLines().single { it.startsWith(draft.id) }
                    assertTrue(line, line.endsWith("1/1 arrived"))
                    assertEquals(SyncState.Synced, gw.incident(draft.id).syncState)
                    assertEquals(0UL, gw.outboxSummary().pending)
                }
            }
        }
    }

    @Test
    fun twoCoroutinesCaptureWhileASyncRuns() = runBlocking {
        TestServer().use { server ->
            SlowLink(server.url).use { link ->
                link.slow = false
                Gridwork.open(storeConfig(tempDir("gw-device"), randomKey())).use { gw ->
                    gw.login(link.url, "worker1", PASSWORD)
                    val first = gw.createDraft(report("第一条"))
                    gw.attachPhoto(first.id, writeJpeg(File(tempDir("gw-camera"), "big.jpg"), 2000, 1500, seed = 4, noise = true).path)
                    gw.submit(first.id)

                    link.bytesPerTick = 2048
                    link.slow = true
                    val sync = async(Dispatchers.Default) { gw.sync(SyncTrigger.OPERATION_QUEUED, 120.seconds) }
                    gw.awaitSyncRunning()
                    val camera = tempDir("gw-camera")
                    val captured = (0 until 2).map { worker ->
                        async(Dispatchers.Default) {
                            (0 until 5).map { n ->
                                val draft = gw.createDraft(report("并发上报 $worker-$n"))
                                gw.attachPhoto(draft.id, writeJpeg(File(camera, "c$worker-$n.jpg"), 320, 240, seed = 10 * worker + n).path)
                                gw.submit(draft.id).id
                            }
                        }
                    }.awaitAll().flatten()
                    assertTrue("captures did not wait for the sync", sync.isActive && gw.syncStatus.running)
                    assertEquals(10, captured.toSet().size)

                    link.slow = false
                    sync.await()
                    val last = gw.sync(SyncTrigger.MANUAL_RETRY, 60.seconds)
                    assertTrue("$last", last.completed)
                    val lines = server.incidentLines()
                    for (id in captured + first.id) {
                        val line = lines.single { it.startsWith(id) }
                        assertTrue(line, line.endsWith("1/1 arrived"))
                    }
                    assertEquals(11, lines.size)
                }
            }
        }
    }
}
