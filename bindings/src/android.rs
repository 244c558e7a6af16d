//! Android start-up. The TLS platform verifier asks Android's TrustManager
//! (which includes user- and MDM-installed CAs) through JNI, so it needs the
//! app's Context before the first https request; without it the first sync
//! to an https server would panic. The Kotlin side calls this once, from
//! `app.gridwork.android.GridworkAndroid.init(context)`.

use jni::EnvUnowned;
use jni::errors::ThrowRuntimeExAndDefault;
use jni::objects::{JClass, JObject};

/// JNI entry for `GridworkAndroid.initNative(Context)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_app_gridwork_android_GridworkAndroid_initNative<'caller>(
    mut unowned_env: EnvUnowned<'caller>,
    _class: JClass<'caller>,
    context: JObject<'caller>,
) {
    unowned_env
        .with_env(|env| rustls_platform_verifier::android::init_with_env(env, context))
        .resolve::<ThrowRuntimeExAndDefault>();
}
