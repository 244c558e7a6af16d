import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.android.library)
    alias(libs.plugins.kotlin.android)
}

android {
    namespace = "app.gridwork.android"
    compileSdk = 35

    defaultConfig {
        minSdk = 24
        // JNA, the bindings and the platform verifier are reached only by
        // reflection or JNI: apps that shrink must keep them.
        consumerProguardFiles("consumer-rules.pro")
    }

    sourceSets["main"].apply {
        // The Kotlin API is shared with the JVM test module (compiled and
        // tested there against the real library); the bindings are generated
        // by bindings/generate (not committed).
        kotlin.srcDirs("../gridwork-jvm/src/main/kotlin", "../../bindings/build/kotlin")
        // libgridwork_ffi.so per ABI, written by android/build-native.
        jniLibs.srcDirs("build/jniLibs")
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
}

kotlin {
    compilerOptions { jvmTarget.set(JvmTarget.JVM_17) }
}

// The Kotlin half of rustls-platform-verifier must be the version the Rust
// half was built with (a mismatch fails at run time, in JNI, not at build
// time), so it is read from Cargo.lock, as the crate's README does, through a
// ValueSource (configuration-cache friendly: re-read when the lock changes).
abstract class RustlsVerifierVersion : ValueSource<String, RustlsVerifierVersion.Params> {
    interface Params : ValueSourceParameters {
        val lockFile: RegularFileProperty
    }

    override fun obtain(): String {
        val crate = "rustls-platform-verifier-android"
        val lockFile = parameters.lockFile.get().asFile
        val lines = lockFile.readLines()
        val at = lines.indexOfFirst { it.trim() == "name = \"$crate\"" }
        val version = if (at < 0) null else lines.drop(at + 1)
            .firstOrNull { it.trimStart().startsWith("version = ") }
            ?.substringAfter('"', "")
            ?.substringBefore('"', "")
            ?.takeIf { it.isNotEmpty() }
        return version ?: throw GradleException("$crate not found in $lockFile")
    }
}

val rustlsVerifierVersion = providers.of(RustlsVerifierVersion::class.java) {
    parameters.lockFile.set(layout.projectDirectory.file("../../Cargo.lock"))
}

dependencies {
    // uniffi's Kotlin calls the library through JNA; on Android it needs the
    // aar, which carries libjnidispatch.so for each ABI (the jar has none).
    implementation("net.java.dev.jna:jna:5.14.0@aar")
    // The Kotlin API exposes suspend functions and Flows.
    api(libs.kotlinx.coroutines.android)
    // SyncWorker is public and extends CoroutineWorker.
    api(libs.androidx.work.runtime.ktx)
    implementation(libs.androidx.core.ktx)
    // ActivityResultContracts.TakePicture for CameraCapture.
    api(libs.androidx.activity.ktx)
    // The group is org.rustls (the README's `rustls:` group holds only
    // 0.1.0). Declared with the version from Cargo.lock rather than through
    // the README's resolutionStrategy rule: that rule would only apply to this
    // project's configurations, while the app resolves this dependency with
    // its own and needs a version in the declaration.
    addProvider("implementation", rustlsVerifierVersion.map { "org.rustls:rustls-platform-verifier:$it" })
}
