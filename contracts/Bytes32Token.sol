// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title An ERC-20 for blockcast's tests whose `symbol()` and `name()` return `bytes32`, as old
/// tokens (MKR, SAI) do, instead of `string`: readers of token metadata must accept both.
/// Anyone may mint.
contract Bytes32Token {
    bytes32 public constant symbol = "MKR";
    bytes32 public constant name = "Maker";
    uint256 public constant decimals = 18;
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;

    event Transfer(address indexed from, address indexed to, uint256 value);

    function mint(address to, uint256 value) external {
        totalSupply += value;
        balanceOf[to] += value;
        emit Transfer(address(0), to, value);
    }

    function transfer(address to, uint256 value) external returns (bool) {
        require(balanceOf[msg.sender] >= value, "balance");
        balanceOf[msg.sender] -= value;
        balanceOf[to] += value;
        emit Transfer(msg.sender, to, value);
        return true;
    }
}
