package app.gridwork

import java.io.BufferedReader
import java.io.File
import java.io.InputStreamReader
import java.net.InetSocketAddress
import java.net.ServerSocket
import java.net.Socket
import java.nio.file.Files
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger
import kotlin.concurrent.thread

const val PASSWORD = "correct horse battery"

/** The two grids the Rust end-to-end tests use (G-001 west of G-002). */
val TWO_GRIDS = """
{"type":"FeatureCollection","features":[
 {"type":"Feature","properties":{"code":"G-001","name":"南京东路第一网格","level":"key_attention","community":"C-01","street":"S-01"},
  "geometry":{"type":"Polygon","coordinates":[[[121.46,31.22],[121.47,31.22],[121.47,31.24],[121.46,31.24],[121.46,31.22]]]}},
 {"type":"Feature","properties":{"code":"G-002","name":"南京东路第二网格","level":"routine","community":"C-01","street":"S-01"},
  "geometry":{"type":"Polygon","coordinates":[[[121.47,31.22],[121.48,31.22],[121.48,31.24],[121.47,31.24],[121.47,31.22]]]}}]}
""".trimIndent()

/**
 * A real `gridwork-server` process on loopback (embedded SQLite), seeded
 * with worker1 and worker2 (grid workers of G-001) and the two grids. The
 * binary comes from GRIDWORK_SERVER_BIN (set by android/gridwork-jvm/test).
 */
class TestServer : AutoCloseable {
    val dataDir: File = Files.createTempDirectory("gridwork-server").toFile()
    private val process: Process
    val url: String

    init {
        admin("init")
        admin("user", "add", "--username", "worker1", "--password", PASSWORD, "--role", "grid_worker", "--grid", "G-001")
        admin("user", "add", "--username", "worker2", "--password", PASSWORD, "--role", "grid_worker", "--grid", "G-001")
        val grids = File(dataDir, "grids.geojson").apply { writeText(TWO_GRIDS) }
        admin("grid", "import", grids.path)
        process = ProcessBuilder(bin(), "--data", dataDir.path, "serve", "--listen", "127.0.0.1:0")
            .redirectError(File(dataDir, "server.log"))
            .start()
        val line = BufferedReader(InputStreamReader(process.inputStream)).readLine()
            ?: error("gridwork-server exited: " + File(dataDir, "server.log").readText())
        url = line.substringAfter("listening on ").trim()
        check(url.startsWith("http://127.0.0.1:")) { "unexpected first line: $line" }
    }

    /** Runs an admin command on this server's data folder; returns stdout. */
    fun admin(vararg args: String): String {
        val p = ProcessBuilder(listOf(bin(), "--data", dataDir.path) + args).redirectErrorStream(true).start()
        val out = p.inputStream.bufferedReader().readText()
        check(p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0) { "gridwork-server ${args.toList()}: $out" }
        return out
    }

    /** `incidents list`: one line per case, "<id> <state> ... <arrived>/<total> arrived" (the header row and "no cases" left out). */
    fun incidentLines(): List<String> = admin("incidents", "list").lines().filter { it.isNotBlank() && !it.startsWith("id ") && it != "no cases" }

    override fun close() {
        process.destroy()
        process.waitFor(10, TimeUnit.SECONDS)
        dataDir.deleteRecursively()
    }

    private fun bin(): String = System.getenv("GRIDWORK_SERVER_BIN") ?: error("GRIDWORK_SERVER_BIN is not set (run android/gridwork-jvm/test)")
}

/**
 * A TCP relay in front of the server that, while [slow], passes at most
 * [bytesPerTick] bytes per 10 ms in each direction: a 2G-like link on which
 * an upload takes seconds, so a test can cancel in the middle of one.
 */
class SlowLink(private val target: String) : AutoCloseable {
    private val listener = ServerSocket().apply { bind(InetSocketAddress("127.0.0.1", 0)) }
    @Volatile var slow = true
    @Volatile var bytesPerTick = 2048
    val connections = AtomicInteger()
    val url = "http://127.0.0.1:${listener.localPort}"

    init {
        thread(isDaemon = true, name = "slow-link") {
            while (!listener.isClosed) {
                val client = try { listener.accept() } catch (_: Exception) { break }
                connections.incrementAndGet()
                val hostPort = target.removePrefix("http://").split(":")
                val upstream = Socket(hostPort[0], hostPort[1].toInt())
                pump(client, upstream)
                pump(upstream, client)
            }
        }
    }

    private fun pump(from: Socket, to: Socket) = thread(isDaemon = true) {
        val buffer = ByteArray(64 * 1024)
        try {
            val input = from.getInputStream()
            val output = to.getOutputStream()
            while (true) {
                val limit = if (slow) bytesPerTick else buffer.size
                val n = input.read(buffer, 0, limit)
                if (n < 0) break
                output.write(buffer, 0, n)
                output.flush()
                if (slow) Thread.sleep(10)
            }
        } catch (_: Exception) {
        } finally {
            runCatching { to.shutdownOutput() }
        }
    }

    override fun close() = listener.close()
}
