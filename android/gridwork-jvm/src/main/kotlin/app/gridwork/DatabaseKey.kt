package app.gridwork

import java.io.File
import java.io.FileOutputStream
import java.nio.ByteBuffer
import java.security.SecureRandom
import javax.crypto.Cipher
import javax.crypto.SecretKey
import javax.crypto.spec.GCMParameterSpec

/** The key file exists but cannot be opened: never replaced silently (the database would be lost with it). */
class DatabaseKeyUnreadable(message: String, cause: Throwable? = null) : Exception(message, cause)

/**
 * The store's 32-byte database key, random on first use and kept in [file]
 * wrapped (AES-256-GCM) by [wrappingKey]: on Android a non-exportable
 * Android Keystore key (see android/gridwork KeystoreKeys), so the file is
 * useless off the device. The JVM tests use a software key.
 *
 * File layout: "GWK1", IV length (1 byte), IV, ciphertext+tag.
 */
class DatabaseKeyFile(private val file: File, private val wrappingKey: SecretKey) {
    private companion object {
        val MAGIC = "GWK1".toByteArray()
        const val KEY_BYTES = 32
        const val TAG_BITS = 128
    }

    /** The key: read from [file], or made, wrapped and written durably on first use. */
    @Synchronized
    fun getOrCreate(): ByteArray {
        if (file.exists()) return read()
        // A crash after the partial file was synced but before the rename
        // reached the disk: that key may already encrypt a database, so it
        // is promoted, never replaced by a new one.
        val partial = partialFile()
        if (partial.exists()) {
            val key = runCatching { read(partial) }.getOrNull()
            if (key != null) {
                if (!partial.renameTo(file)) throw DatabaseKeyUnreadable("cannot store the key file")
                syncDirectory()
                return key
            }
            partial.delete() // torn before its sync: no database can use it
        }
        val key = ByteArray(KEY_BYTES).also { SecureRandom().nextBytes(it) }
        write(key)
        return key
    }

    private fun partialFile() = File(file.path + ".partial")

    private fun read(from: File = file): ByteArray {
        val bytes = from.readBytes()
        if (bytes.size < MAGIC.size + 1 || !bytes.copyOfRange(0, MAGIC.size).contentEquals(MAGIC)) {
            throw DatabaseKeyUnreadable("key file has an unknown format")
        }
        val ivLength = bytes[MAGIC.size].toInt() and 0xFF
        val ivStart = MAGIC.size + 1
        if (bytes.size < ivStart + ivLength + TAG_BITS / 8) throw DatabaseKeyUnreadable("key file is truncated")
        val iv = bytes.copyOfRange(ivStart, ivStart + ivLength)
        val cipher = Cipher.getInstance("AES/GCM/NoPadding")
        val key = try {
            cipher.init(Cipher.DECRYPT_MODE, wrappingKey, GCMParameterSpec(TAG_BITS, iv))
            cipher.doFinal(bytes, ivStart + ivLength, bytes.size - ivStart - ivLength)
        } catch (e: java.security.GeneralSecurityException) {
            throw DatabaseKeyUnreadable("key file does not open with this device's wrapping key", e)
        }
        if (key.size != KEY_BYTES) throw DatabaseKeyUnreadable("key file holds a key of the wrong size")
        return key
    }

    private fun write(key: ByteArray) {
        val cipher = Cipher.getInstance("AES/GCM/NoPadding")
        // No IV passed in: Android Keystore keys refuse caller-chosen IVs.
        cipher.init(Cipher.ENCRYPT_MODE, wrappingKey)
        val sealed = cipher.doFinal(key)
        val iv = cipher.iv
        val out = ByteBuffer.allocate(MAGIC.size + 1 + iv.size + sealed.size)
            .put(MAGIC).put(iv.size.toByte()).put(iv).put(sealed).array()
        // Write beside, sync, rename: a crash leaves either no key file or a whole one.
        file.parentFile?.mkdirs()
        val partial = partialFile()
        FileOutputStream(partial).use { stream ->
            stream.write(out)
            stream.fd.sync()
        }
        if (!partial.renameTo(file)) throw DatabaseKeyUnreadable("cannot store the key file")
        syncDirectory()
    }

    /** Makes the rename durable (Linux and Android can fsync a directory). */
    private fun syncDirectory() {
        val dir = file.absoluteFile.parentFile ?: return
        runCatching {
            java.nio.channels.FileChannel.open(dir.toPath(), java.nio.file.StandardOpenOption.READ).use { it.force(true) }
        }
    }
}
