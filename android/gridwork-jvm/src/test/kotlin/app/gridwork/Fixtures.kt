package app.gridwork

import java.awt.Color
import java.awt.image.BufferedImage
import java.io.File
import java.nio.file.Files
import java.security.SecureRandom
import javax.imageio.IIOImage
import javax.imageio.ImageIO
import javax.imageio.ImageWriteParam
import kotlin.random.Random

/** A real JPEG written by the JVM's own encoder: a gradient with [noise] speckle. */
fun writeJpeg(file: File, width: Int, height: Int, seed: Int, noise: Boolean = false, quality: Float = 0.9f): File {
    val image = BufferedImage(width, height, BufferedImage.TYPE_INT_RGB)
    val random = Random(seed)
    for (y in 0 until height) for (x in 0 until width) {
        var r = (x * 255 / width + seed * 37) and 0xFF
        var g = (y * 255 / height + seed * 91) and 0xFF
        var b = ((x + y) * 255 / (width + height)) and 0xFF
        if (noise) {
            r = (r + random.nextInt(-60, 60)).coerceIn(0, 255)
            g = (g + random.nextInt(-60, 60)).coerceIn(0, 255)
            b = (b + random.nextInt(-60, 60)).coerceIn(0, 255)
        }
        image.setRGB(x, y, Color(r, g, b).rgb)
    }
    val writer = ImageIO.getImageWritersByFormatName("jpeg").next()
    val params = writer.defaultWriteParam.apply {
        compressionMode = ImageWriteParam.MODE_EXPLICIT
        compressionQuality = quality
    }
    ImageIO.createImageOutputStream(file).use { out ->
        writer.output = out
        writer.write(null, IIOImage(image, null, null), params)
    }
    writer.dispose()
    return file
}

fun tempDir(prefix: String): File = Files.createTempDirectory(prefix).toFile()

fun randomKey(): ByteArray = ByteArray(32).also { SecureRandom().nextBytes(it) }

fun sha256Hex(file: File): String =
    java.security.MessageDigest.getInstance("SHA-256").digest(file.readBytes()).joinToString("") { "%02x".format(it) }
