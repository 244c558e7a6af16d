// The Android shell of Gridwork: the library `:gridwork` (the JVM-tested
// Kotlin API, the generated bindings, the native libraries and the little
// Android glue) and `:sample`, a Compose app that exercises it.
// Native libraries and generated Kotlin come from ./build-native first.

pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    // Repositories live here only, so the app resolves the library's
    // dependencies from the same places the library was built against.
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
        // The Kotlin half of rustls-platform-verifier (the Android trust
        // manager the core's TLS calls through JNI) is published only here,
        // by the rustls project. Restricted to its group so nothing else can
        // be resolved from a GitHub branch.
        maven {
            url = uri("https://github.com/rustls/rustls-platform-verifier/raw/maven-archive/android-release-support/maven/")
            content { includeGroup("org.rustls") }
        }
    }
}

rootProject.name = "gridwork-android"
include(":gridwork", ":sample")
