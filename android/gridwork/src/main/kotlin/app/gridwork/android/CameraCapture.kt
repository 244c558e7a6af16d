package app.gridwork.android

import android.content.Context
import android.net.Uri
import androidx.activity.result.contract.ActivityResultContracts
import androidx.core.content.FileProvider
import app.gridwork.CaptureFiles
import app.gridwork.Gridwork
import app.gridwork.ffi.Photo
import java.io.File

/**
 * Taking a photo for a report with the phone's camera app
 * ([ActivityResultContracts.TakePicture]): the camera writes a full-size
 * JPEG through a content:// URI into a file of ours, the core copies it into
 * the store and the file is deleted ([CaptureFiles]).
 *
 * Usage: register [contract]; on "take photo" call [newCapture], keep its
 * [Capture.path] across process death (rememberSaveable, SavedStateHandle:
 * the system may kill the app while the camera is in front) and launch the
 * contract with [Capture.uri]; in the result callback call [finish].
 */
class CameraCapture(context: Context) {
    private val app = context.applicationContext
    private val files = CaptureFiles(File(app.cacheDir, DIRECTORY))

    val contract = ActivityResultContracts.TakePicture()

    /** A new, empty file for the camera, and the URI the camera writes it through. */
    fun newCapture(): Capture {
        val file = files.newFile()
        return Capture(file.path, FileProvider.getUriForFile(app, "${app.packageName}.gridwork.files", file))
    }

    /**
     * Attaches the photo at [path] to the draft [incidentId] when the camera
     * took one ([taken], the contract's result), and deletes the file either
     * way. Null when nothing was taken; throws the core's refusal otherwise.
     */
    suspend fun finish(gridwork: Gridwork, incidentId: String, path: String, taken: Boolean): Photo? {
        val file = File(path)
        if (!taken) {
            file.delete()
            return null
        }
        return files.attach(gridwork, incidentId, file)
    }

    /**
     * Deletes files of captures that never finished. Only when no capture can
     * still be under way (not while a saved [Capture.path] waits for its
     * result): the camera may be writing into one.
     */
    fun sweep(): Int = files.sweep()

    /** One capture in progress; [path] is what to save, [uri] what to give the camera. */
    data class Capture(val path: String, val uri: Uri)

    private companion object {
        /** Must match res/xml/gridwork_file_paths.xml. */
        const val DIRECTORY = "gridwork-captures"
    }
}

/**
 * The library's own FileProvider (declared in its manifest with the
 * authority `${applicationId}.gridwork.files`): an app declaring
 * androidx.core's FileProvider for itself would otherwise clash with ours
 * in the manifest merge.
 */
class GridworkFileProvider : FileProvider()
