#pragma once

#include <openssl/evp.h>

#include <memory>

// Owning pointers for OpenSSL objects (style.md §4.3). This is the only header that names
// OpenSSL free functions: every other file holds OpenSSL objects through these aliases, so no
// error path can leak a context (and the cipher context's key schedule, which
// EVP_CIPHER_CTX_free cleanses).
namespace vtpm::state::ossl
{

// Stateless deleter: the unique_ptr stays pointer-sized and its deleter can never be null.
template <auto FreeFn>
struct Deleter
{
    template <typename T>
    void operator()(T* p) const noexcept
    {
        FreeFn(p);
    }
};

using Cipher = std::unique_ptr<EVP_CIPHER, Deleter<&EVP_CIPHER_free>>;
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, Deleter<&EVP_CIPHER_CTX_free>>;
using Mac = std::unique_ptr<EVP_MAC, Deleter<&EVP_MAC_free>>;
using MacCtx = std::unique_ptr<EVP_MAC_CTX, Deleter<&EVP_MAC_CTX_free>>;
using Md = std::unique_ptr<EVP_MD, Deleter<&EVP_MD_free>>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, Deleter<&EVP_MD_CTX_free>>;

} // namespace vtpm::state::ossl
