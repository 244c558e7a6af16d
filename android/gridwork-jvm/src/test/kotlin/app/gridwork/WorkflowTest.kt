package app.gridwork

import app.gridwork.ffi.CaseAction
import app.gridwork.ffi.DeadlineLight
import app.gridwork.ffi.GridworkException
import app.gridwork.ffi.IncidentStatus
import app.gridwork.ffi.PhotoRole
import app.gridwork.ffi.PhotoSize
import app.gridwork.ffi.StatsQuery
import app.gridwork.ffi.StepInput
import app.gridwork.ffi.SyncTrigger
import app.gridwork.ffi.TaskFilter
import app.gridwork.ffi.TaskKind
import app.gridwork.ffi.TimedStep
import kotlin.time.Duration.Companion.seconds
import kotlinx.coroutines.runBlocking
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

/**
 * Tasks and workflow steps through the bindings against a real server: a
 * department signs and handles with an after-photo, a grid worker verifies
 * with a rating and an on-site photo; steps the server would refuse are
 * refused offline with stable codes.
 */
class WorkflowTest {
    private suspend fun Gridwork.syncOk() {
        val report = sync(SyncTrigger.APP_FOREGROUNDED, 60.seconds)
        assertTrue("$report", report.completed)
    }

    private suspend inline fun <reified E : GridworkException> refused(crossinline step: suspend () -> Unit): E {
        try {
            step()
        } catch (e: GridworkException) {
            if (e is E) return e
            throw AssertionError("expected ${E::class.simpleName}, got $e", e)
        }
        fail("expected ${E::class.simpleName}")
        throw IllegalStateException()
    }

    @Test
    fun aDepartmentHandlesAndAGridWorkerVerifiesWithARating() = runBlocking {
        TestServer().use { server ->
            server.admin("user", "add", "--username", "sanitation", "--password", PASSWORD, "--role", "department")
            val camera = tempDir("gw-camera")
            Gridwork.open(storeConfig(tempDir("gw-worker"), randomKey(), "worker1@test")).use { worker ->
                Gridwork.open(storeConfig(tempDir("gw-department"), randomKey(), "sanitation@test")).use { department ->
                    worker.login(server.url, "worker1", PASSWORD)
                    department.login(server.url, "sanitation", PASSWORD)
                    worker.syncOk()
                    val case = worker.createDraft(report("公厕墙体开裂")).id
                    worker.submit(case)
                    worker.syncOk()
                    server.admin("register", case)
                    val due = System.currentTimeMillis() + 48 * 3_600_000L
                    server.admin("dispatch", case, "--assignee", "sanitation", "--deadline-ms", due.toString(), "--note", "请尽快修复")

                    department.syncOk()
                    val tasks = department.tasks()
                    assertEquals(listOf(case), tasks.map { it.incidentId })
                    assertEquals(TaskKind.HANDLE, tasks[0].kind)
                    assertEquals(IncidentStatus.DISPATCHED, tasks[0].status)
                    assertEquals(DeadlineLight.GREEN, tasks[0].light)
                    assertEquals(TimedStep.HANDLE, tasks[0].deadlineStep)
                    assertEquals("请尽快修复", tasks[0].note)
                    assertEquals(emptyList<Any>(), department.tasks(TaskFilter(kind = TaskKind.VERIFY)))

                    // Refused offline, with codes a UI switches on.
                    department.setNetwork(online = false, metered = false)
                    val noNote = refused<GridworkException.InvalidInput> {
                        department.takeStep(case, StepInput(CaseAction.HANDLE))
                    }
                    assertEquals("note_required", noNote.code)
                    assertEquals("note", noNote.field)
                    val notYet = refused<GridworkException.InvalidState> {
                        department.takeStep(case, StepInput(CaseAction.CLOSE, rating = 5u))
                    }
                    assertEquals("invalid_state", notYet.code)

                    assertEquals(IncidentStatus.SIGNED, department.takeStep(case, StepInput(CaseAction.SIGN)).status)
                    val after = writeJpeg(camera.resolve("after.jpg"), 640, 480, seed = 21)
                    val handled = department.takeStep(case, StepInput(CaseAction.HANDLE, note = "已修补", photoPaths = listOf(after.path)))
                    assertEquals(IncidentStatus.HANDLED, handled.status)
                    val ownWork = refused<GridworkException.InvalidState> {
                        department.takeStep(case, StepInput(CaseAction.CLOSE, rating = 5u))
                    }
                    assertEquals("step_not_allowed", ownWork.code)
                    department.setNetwork(online = true, metered = false)
                    department.syncOk()

                    worker.syncOk()
                    val verify = worker.tasks(TaskFilter(kind = TaskKind.VERIFY))
                    assertEquals(listOf(case), verify.map { it.incidentId })
                    val badRating = refused<GridworkException.InvalidInput> {
                        worker.takeStep(case, StepInput(CaseAction.CLOSE, rating = 9u))
                    }
                    assertEquals("rating", badRating.field)
                    val onsite = writeJpeg(camera.resolve("onsite.jpg"), 640, 480, seed = 22)
                    worker.takeStep(case, StepInput(CaseAction.CLOSE, note = "施工粗糙", rating = 2u, photoPaths = listOf(onsite.path)))
                    worker.syncOk()

                    val detail = worker.incident(case)
                    assertEquals(IncidentStatus.CLOSED, detail.incident.status)
                    val info = detail.case ?: error("the server's story of the case is on the device")
                    assertEquals(2.toUByte(), info.rating)
                    assertEquals(listOf(PhotoRole.AFTER, PhotoRole.VERIFICATION), info.photos.map { it.role })
                    assertTrue("${info.photos}", info.photos.all { it.arrived })
                    assertEquals(
                        listOf("report", "register", "dispatch", "sign", "handle", "close"),
                        info.timeline.map { it.action }.filterNot { it.endsWith("_arrived") },
                    )
                    assertEquals(listOf(PhotoRole.VERIFICATION), detail.photos.map { it.role })
                    // The department's after-photo, full size on the worker's phone.
                    val fetched = worker.casePhotoFile(info.photos[0].sha256, PhotoSize.ORIGINAL)
                    assertTrue(java.io.File(fetched).readBytes().contentEquals(after.readBytes()))
                    assertEquals(fetched, worker.casePhotoFile(info.photos[0].sha256, PhotoSize.ORIGINAL))
                    val trail = worker.verifyAuditTrail()
                    assertEquals(null, trail.brokenAt)
                    assertTrue("$trail", trail.entries > 0uL && trail.unsealed == 0uL && trail.head.length == 64)
                    val grid = worker.stats(StatsQuery(gridCode = "G-001", fromMs = 0, toMs = Long.MAX_VALUE))
                    assertEquals(1u, grid.closed)
                    assertEquals(2.0, grid.averageRating!!, 0.0)
                    assertEquals(1u, department.stats(StatsQuery(user = "sanitation", fromMs = 0, toMs = Long.MAX_VALUE)).handled)

                    // 现场解决: before and after photos, straight to verification.
                    val fixed = worker.createDraft(report("楼道纸箱")).id
                    worker.attachPhoto(fixed, writeJpeg(camera.resolve("before.jpg"), 640, 480, seed = 23).path)
                    val afterPhoto = worker.attachPhotoAs(fixed, writeJpeg(camera.resolve("fixed.jpg"), 640, 480, seed = 24).path, PhotoRole.AFTER)
                    assertEquals(PhotoRole.AFTER, afterPhoto.role)
                    assertEquals(IncidentStatus.SUBMITTED, worker.submitResolved(fixed, "已当场清理").status)
                    worker.syncOk()
                    assertTrue(server.incidentLines().toString(), server.incidentLines().any { it.startsWith("$fixed handled") })

                    // 件件有回音: a rejected report comes back as a linked draft to correct.
                    val wrong = worker.createDraft(report("井盖松动")).id
                    worker.submit(wrong)
                    worker.syncOk()
                    server.admin("reject", wrong, "--note", "照片看不清")
                    worker.syncOk()
                    val again = worker.resubmit(wrong)
                    assertEquals(IncidentStatus.DRAFT, again.status)
                    assertEquals("井盖松动", again.description)
                }
            }
        }
    }
}
