import { describe, expect, it } from 'vitest';
import { addressKey, clientAddress, normalizeIp } from './clientAddress.ts';

describe('normalizeIp', () => {
  it('writes IPv6 in one form and an IPv4-mapped address as IPv4', () => {
    expect(normalizeIp('0000:0000:0000:0000:0000:0000:0000:0001')).toBe('0:0:0:0:0:0:0:1');
    expect(normalizeIp('::1')).toBe('0:0:0:0:0:0:0:1');
    expect(normalizeIp('2001:DB8::A')).toBe('2001:db8:0:0:0:0:0:a');
    expect(normalizeIp('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(normalizeIp('0000:0000:0000:0000:0000:ffff:0a01:0203')).toBe('10.1.2.3');
    expect(normalizeIp('192.0.2.7')).toBe('192.0.2.7');
  });
});

describe('addressKey', () => {
  it('counts an IPv4 address alone and an IPv6 address by its /64', () => {
    expect(addressKey('192.0.2.7')).toBe('192.0.2.7');
    expect(addressKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8:1:2:bbbb::9')).toBe(addressKey('2001:db8:1:2:aaaa::1'));
    expect(addressKey('2001:db8:1:3::1')).not.toBe(addressKey('2001:db8:1:2::1'));
    expect(addressKey('::ffff:192.0.2.7')).toBe('192.0.2.7');
  });
});

describe('clientAddress', () => {
  const trusted = new Set(['10.0.0.1', '10.0.0.2']);

  it('takes the peer when it is not a trusted proxy, whatever the header says', () => {
    expect(clientAddress('198.51.100.4', '203.0.113.9', trusted)).toBe('198.51.100.4');
  });

  it('takes the right-most address that is not a trusted proxy', () => {
    expect(clientAddress('10.0.0.1', '1.1.1.1, 203.0.113.9, 10.0.0.2', trusted)).toBe('203.0.113.9');
    expect(clientAddress('10.0.0.1', '203.0.113.9', trusted)).toBe('203.0.113.9');
  });

  it('keeps the proxy for a header that is missing, malformed, or all proxies', () => {
    expect(clientAddress('10.0.0.1', '', trusted)).toBe('10.0.0.1');
    expect(clientAddress('10.0.0.1', 'not-an-ip', trusted)).toBe('10.0.0.1');
    expect(clientAddress('10.0.0.1', '10.0.0.2, 10.0.0.1', trusted)).toBe('10.0.0.1');
  });
});
