package app.gridwork.android

import android.content.Context
import android.security.keystore.KeyGenParameterSpec
import android.security.keystore.KeyProperties
import app.gridwork.DatabaseKeyFile
import java.io.File
import java.security.KeyStore
import javax.crypto.KeyGenerator
import javax.crypto.SecretKey

/**
 * The Android Keystore key that wraps the store's database key. It never
 * leaves the secure hardware (or the Keystore daemon on devices without
 * one), so the key file in noBackupFilesDir is useless off this device.
 *
 * No user authentication is required: the background sync must open the
 * store while the phone is locked.
 */
object KeystoreKeys {
    private const val PROVIDER = "AndroidKeyStore"

    /** Under noBackupFilesDir: the key file, and the store's data directory. */
    internal const val DIRECTORY = "gridwork"

    /** The wrapped database key of this app's stores. */
    fun databaseKeyFile(context: Context): DatabaseKeyFile =
        DatabaseKeyFile(File(context.noBackupFilesDir, "$DIRECTORY/database.key"), wrappingKey(alias(context)))

    // The Keystore is per app already; the package name keeps the alias
    // readable in dumps and distinct from any other key the app makes.
    private fun alias(context: Context) = "${context.packageName}.gridwork.database-key-wrap"

    /**
     * Gets the AES-256-GCM key, making it on first use. Synchronized: two
     * callers creating it at once would each generate one, and the second
     * would replace the key that wrapped the first caller's database key.
     */
    @Synchronized
    fun wrappingKey(alias: String): SecretKey {
        val keyStore = KeyStore.getInstance(PROVIDER).apply { load(null) }
        (keyStore.getKey(alias, null) as? SecretKey)?.let { return it }
        val spec = KeyGenParameterSpec.Builder(alias, KeyProperties.PURPOSE_ENCRYPT or KeyProperties.PURPOSE_DECRYPT)
            .setKeySize(256)
            .setBlockModes(KeyProperties.BLOCK_MODE_GCM)
            .setEncryptionPaddings(KeyProperties.ENCRYPTION_PADDING_NONE)
            // The Keystore picks each IV, as DatabaseKeyFile expects.
            .setRandomizedEncryptionRequired(true)
            .build()
        return KeyGenerator.getInstance(KeyProperties.KEY_ALGORITHM_AES, PROVIDER)
            .apply { init(spec) }
            .generateKey()
    }
}
