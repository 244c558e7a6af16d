package app.gridwork

import app.gridwork.ffi.Photo
import java.io.File
import java.util.UUID

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
        try {
            gridwork.attachPhoto(incidentId, file.path)
        } finally {
            file.delete()
        }

    /** Deletes camera files left by a capture that never finished (app killed). */
    fun sweep(): Int = directory.listFiles { f -> f.name.startsWith("capture-") }?.count { it.delete() } ?: 0
}
