package app.gridwork

import app.gridwork.ffi.Photo
import java.io.File
import java.util.UUID
import kotlinx.coroutines.NonCancellable
import kotlinx.coroutines.withContext

/**
 * Camera hand-off. The camera app writes into a file the shell allocates
 * here (on Android behind a FileProvider URI); the core then copies it into
 * the store, after which the camera's file is deleted: the store's copy is
 * the evidence, and a stray full-size JPEG in the cache is personal data.
 */
class CaptureFiles(private val directory: File) {
    /** A new, empty file for the camera to fill. */
    fun newFile(): File {
        directory.mkdirs()
        return File(directory, "capture-${UUID.randomUUID()}.jpg")
    }

    /**
     * Attaches [file] to the draft and deletes it, whether the core took it or
     * refused it (a refused photo is shown to the user as an error, not kept).
     */
    suspend fun attach(gridwork: Gridwork, incidentId: String, file: File): Photo =
        // Not cancellable: the core copies on its own thread even when the
        // caller goes away, so the camera's file must outlive that copy.
        withContext(NonCancellable) {
            try {
                gridwork.attachPhoto(incidentId, file.path)
            } finally {
                file.delete()
            }
        }

    /**
     * Deletes camera files left by captures that never finished (app killed),
     * older than [olderThanMs] so a camera still writing one is left alone.
     */
    fun sweep(olderThanMs: Long = 60 * 60 * 1000L, nowMs: Long = System.currentTimeMillis()): Int =
        directory.listFiles { f -> f.name.startsWith("capture-") && nowMs - f.lastModified() >= olderThanMs }
            ?.count { it.delete() } ?: 0
}
